"""The reference recommendation network of MPSE (paper 3.1.2): which professional photo to take the style from.

The paper measures D_sem = ||f_fc8(I1) - f_fc8(I2)|| on a frozen VGG-16, trains one extra fully connected layer
after FC-8 with a margin loss over 10 positive and 50 negative references per photo, and recommends the nearest
reference under the trained layer. Here:

- The frozen features are VGG-19's (:mod:`models.vgg`): the per-channel mean and standard deviation of relu3_1,
  relu4_1 and relu5_1 over the whole photo (2 x 1280 values). D_sem is their distance. No fc8 is used: it would need
  ImageNet weights, and with random weights its outputs mean nothing.
- The extra layer maps them to a 128-d embedding, L2-normalised so that the margin cannot be met by scaling.
- The margin loss is [mean_p ||f(x) - f(x_p)|| - mean_n ||f(x) - f(x_n)|| + α]_+: the paper's sums divided by the
  counts, equal to them up to scale when the counts are equal, so any number of positives and negatives works.

The shipped head (``models/weights/recommender.pt``) comes from ``python -m train recommend``; it records the
trunk's fingerprint and refuses to run on another trunk.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .registry import WEIGHTS_DIR, CheckpointError
from .vgg import VGGTrunk, channels

DESCRIPTOR_LAYERS = ("relu3_1", "relu4_1", "relu5_1")
INPUT_SIZE = 224
EMBEDDING = 128
SHIPPED = WEIGHTS_DIR / "recommender.pt"


def descriptor_size() -> int:
    return 2 * sum(channels(n) for n in DESCRIPTOR_LAYERS)


class Recommender(nn.Module):
    """Frozen VGG-19 statistics (``descriptor``) and a trained linear embedding (``forward``)."""

    def __init__(self, vgg_weights: str | Path | None = None, dim: int = EMBEDDING):
        super().__init__()
        self.trunk = VGGTrunk(vgg_weights, last="relu5_1")
        self.head = nn.Linear(descriptor_size(), dim)

    @torch.no_grad()
    def descriptor(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2560): per-channel mean and standard deviation of each descriptor layer."""
        feats = self.trunk(x, DESCRIPTOR_LAYERS)
        return torch.cat([torch.cat([feats[n].mean((2, 3)), feats[n].std((2, 3))], 1) for n in DESCRIPTOR_LAYERS], 1)

    def embed(self, descriptor: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(descriptor), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.descriptor(x))


def margin_loss(anchor: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor,
                margin: float = 0.2) -> torch.Tensor:
    """Batch mean of [mean_p ||a - p|| - mean_n ||a - n|| + margin]_+; anchor (B, d), positives (B, P, d),
    negatives (B, N, d)."""
    dp = (anchor[:, None] - positives).norm(dim=-1).mean(1)
    dn = (anchor[:, None] - negatives).norm(dim=-1).mean(1)
    return F.relu(dp - dn + margin).mean()


def photo_tensor(photo: np.ndarray) -> torch.Tensor:
    """A float (H, W, 3) photo in [0, 1] as the network's (1, 3, 224, 224) input (area-resized, aspect squashed)."""
    x = torch.from_numpy(np.array(photo, dtype=np.float32)).permute(2, 0, 1)[None]
    return F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="area")


def load_recommender(checkpoint: str | Path | None = None, vgg_weights: str | Path | None = None) -> Recommender:
    """The shipped head (or a ``python -m train recommend`` checkpoint) on its trunk."""
    path = Path(checkpoint) if checkpoint else SHIPPED
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"Cannot read recommender checkpoint {path}: {str(err).splitlines()[0][:200]}") \
            from None
    if not isinstance(ckpt, dict) or ckpt.get("model") != "recommender":
        raise CheckpointError(f"{path} is not a recommender checkpoint (python -m train recommend writes them)")
    net = Recommender(vgg_weights, dim=int(ckpt["dim"]))
    if ckpt["trunk"] != net.trunk.fingerprint():
        raise CheckpointError(f"{path} was trained on another VGG-19 trunk ({ckpt.get('trunk_weights')}); "
                              f"this one is {net.trunk.describe()}")
    net.head.load_state_dict({k: v.float() for k, v in ckpt["head"].items()})
    return net.eval()


def recommender_checkpoint(net: Recommender, meta: dict) -> dict:
    return {"model": "recommender", "dim": net.head.out_features, "trunk": net.trunk.fingerprint(),
            "trunk_weights": net.trunk.describe(),
            "head": {k: v.half() for k, v in net.head.state_dict().items()}, "meta": meta}


def describe_references(net: Recommender, references: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Each reference's frozen descriptor, computed once for every photo that is ranked against them."""
    return {name: net.descriptor(photo_tensor(ref)) for name, ref in references.items()}


def rank_references(net: Recommender, photo: np.ndarray,
                    references: dict[str, np.ndarray | torch.Tensor]) -> list[tuple[str, float, float]]:
    """(name, distance under the trained embedding, D_sem) for each reference (a photo, or its descriptor from
    :func:`describe_references`), nearest first."""
    with torch.no_grad():
        d0 = net.descriptor(photo_tensor(photo))
        e0 = net.embed(d0)
        rows = []
        for name, ref in references.items():
            d1 = ref if isinstance(ref, torch.Tensor) else net.descriptor(photo_tensor(ref))
            rows.append((name, float((e0 - net.embed(d1)).norm()), float((d0 - d1).norm())))
    return sorted(rows, key=lambda r: r[1])
