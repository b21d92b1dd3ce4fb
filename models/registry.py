"""Name -> factory registry, in the manner of timm: each named variant is a small registered factory."""
from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Callable

import torch
from torch import nn

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

_FACTORIES: dict[str, Callable[..., nn.Module]] = {}


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read, or holds weights for another model or configuration."""


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a factory ``fn(**overrides) -> nn.Module`` under its function name."""
    _FACTORIES[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_FACTORIES)


def check_model_name(name: str) -> str:
    if name not in _FACTORIES:
        raise ValueError(f"Unknown model {name!r}. Known models: {', '.join(list_models())}")
    return name


def create_model(name: str, pretrained: bool = False, checkpoint: str | Path | None = None, **overrides) -> nn.Module:
    """Build a registered model in eval mode.

    pretrained=True loads the weights shipped in ``models/weights/<name>.pt`` (never downloads);
    ``checkpoint`` loads another checkpoint written by ``python -m train``. A checkpoint's saved
    configuration is used unless ``overrides`` change it.
    """
    check_model_name(name)
    path: Path | None = None
    if checkpoint is not None:
        path = Path(checkpoint)
    elif pretrained:
        path = WEIGHTS_DIR / f"{name}.pt"
        if not path.is_file():
            raise CheckpointError(f"No shipped weights for {name!r} (expected {path}). "
                                  f"Models with shipped weights: {', '.join(pretrained_models())}")
    if path is None:
        return _FACTORIES[name](**overrides).eval()
    ckpt = load_checkpoint(path)
    if ckpt["model"] != name:
        raise CheckpointError(f"{path} holds weights for {ckpt['model']!r}, not {name!r}")
    model = _FACTORIES[name](**{**ckpt.get("config", {}), **overrides})
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise CheckpointError(f"{path} does not match {name!r} with this configuration: "
                              f"{' '.join(line.strip() for line in first[:3])[:300]}") from None
    return model.eval()


def pretrained_models() -> list[str]:
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.pt") if p.stem in _FACTORIES)


def load_checkpoint(path: str | Path) -> dict:
    """Load a weights-only checkpoint dict (keys ``model``, ``config``, ``state_dict``, ``meta``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (expected a file written by torch.save)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt/unsafe files
        text = " ".join(str(err).split()) or type(err).__name__
        cause = text.split("WeightsUnpickler error:", 1)[-1].split(". Please")[0].strip()
        raise CheckpointError(f"Cannot read checkpoint {path} as a weights-only file: {cause[:200]}") from None
    if not isinstance(ckpt, dict) or not {"model", "state_dict"} <= set(ckpt):
        raise CheckpointError(f"{path} is not a dslr-mobile checkpoint (needs keys 'model' and 'state_dict')")
    return ckpt


def weights_file(name: str, checkpoint: str | Path | None = None) -> Path:
    """The file a model's weights come from: ``checkpoint``, else the shipped ``models/weights/<name>.pt``."""
    return Path(checkpoint) if checkpoint else WEIGHTS_DIR / f"{name}.pt"


def weights_sha256(name: str, checkpoint: str | Path | None = None) -> str:
    """SHA-256 of ``weights_file``: what a sidecar records, so that an artifact can be matched to its weights."""
    return hashlib.sha256(weights_file(name, checkpoint).read_bytes()).hexdigest()
