"""VGG-19's convolutional trunk: the feature space of the content loss, the style losses of MPSE phase 2 and the
reference recommender (paper 3.1).

Weights: a torchvision VGG-19 state dict when the user has one (``vgg19-dcbb9e9d.pth``; nothing is downloaded),
else **seeded random weights** (He-normal from NumPy's PCG64 generator, seed 0, zero biases), the same on every
machine. Random convolutional filters still carry a photo's local colour and texture statistics: Gram matrices
of random multi-layer features synthesise natural textures (Ustyuzhaninov et al., "What does it take to generate
natural textures?", ICLR 2017). They carry no learned semantics, which ImageNet weights would add; every command
that uses the trunk says which weights it ran on (:func:`VGGTrunk.describe`).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

# torchvision's VGG-19 `features` layout: channel counts, 'M' = 2x2 max-pool.
LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_SEED = 0


def layer_names() -> list[str]:
    """Names of the modules of `features`, in order: conv1_1, relu1_1, conv1_2, relu1_2, pool1, conv2_1, ..."""
    names, block, conv = [], 1, 1
    for v in LAYOUT:
        if v == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 1
        else:
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
            conv += 1
    return names


def channels(name: str) -> int:
    """Channels of a named conv or relu layer's output (relu4_1 -> 512)."""
    convs = dict(zip(_conv_names(), [int(v) for v in LAYOUT if v != "M"]))
    conv = name.replace("relu", "conv")
    if conv not in convs:
        raise ValueError(f"unknown VGG-19 conv or relu layer {name!r}")
    return convs[conv]


def _conv_names() -> list[str]:
    return [n for n in layer_names() if n.startswith("conv")]


class VGGTrunk(nn.Module):
    """VGG-19 `features` up to ``last`` (a layer name), frozen. ``forward(x, layers)`` takes RGB in [0, 1] and
    returns the named layers' outputs."""

    def __init__(self, weights: str | Path | None = None, last: str = "relu5_1"):
        super().__init__()
        names = layer_names()
        if last not in names:
            raise ValueError(f"unknown VGG-19 layer {last!r}; known: {', '.join(names)}")
        modules: list[nn.Module] = []
        cin = 3
        for v in LAYOUT:
            if v == "M":
                modules.append(nn.MaxPool2d(2, 2))
            else:
                modules += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU()]
                cin = int(v)
        keep = names.index(last) + 1
        self.names = names[:keep]
        self.features = nn.Sequential(*modules[:keep])
        self.weights = str(weights) if weights else None
        self._load(weights) if weights else self._random()
        self.requires_grad_(False).eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def _random(self) -> None:
        rng = np.random.default_rng(RANDOM_SEED)
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * 9
                w = rng.standard_normal(tuple(m.weight.shape)).astype(np.float32) * np.float32(np.sqrt(2 / fan_in))
                m.weight.data.copy_(torch.from_numpy(w))
                m.bias.data.zero_()

    def _load(self, weights: str | Path) -> None:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ValueError(f"Cannot read VGG-19 weights {weights}: {str(err).splitlines()[0][:200]}") from None
        if not isinstance(state, dict):
            raise ValueError(f"{weights} is not a torchvision VGG-19 state dict")
        state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        wanted = self.features.state_dict()
        missing = set(wanted) - set(state)
        if missing:
            raise ValueError(f"{weights} is not a torchvision VGG-19 state dict (missing {sorted(missing)[:3]})")
        if any(state[k].shape != wanted[k].shape for k in wanted):
            raise ValueError(f"{weights} is not a VGG-19 state dict (layer shapes differ)")
        self.features.load_state_dict({k: state[k] for k in wanted})

    def train(self, mode: bool = True) -> "VGGTrunk":
        return super().train(False)  # always frozen

    def describe(self) -> str:
        if self.weights:
            return f"VGG-19 weights from {self.weights}"
        return f"random VGG-19 weights (He-normal, NumPy PCG64 seed {RANDOM_SEED}; no ImageNet weights given)"

    def fingerprint(self) -> str:
        """A short hash of the weights: what a head trained on this trunk must find again."""
        h = hashlib.sha256()
        for v in self.features.state_dict().values():
            h.update(v.detach().to(torch.float32).numpy().tobytes())
        return h.hexdigest()[:16]

    def forward(self, x: torch.Tensor, layers: tuple[str, ...] | list[str]) -> dict[str, torch.Tensor]:
        unknown = [name for name in layers if name not in self.names]
        if unknown:
            raise ValueError(f"layer {unknown[0]!r} is not in this trunk (it ends at {self.names[-1]})")
        out, h, wanted = {}, (x - self.mean) / self.std, set(layers)
        for name, module in zip(self.names, self.features):
            h = module(h)
            if name in wanted:
                out[name] = h
                if len(out) == len(wanted):
                    break
        return out
