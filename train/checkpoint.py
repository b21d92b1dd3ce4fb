"""Atomic checkpoints: written to a temporary file in the same folder, then renamed over the old one.

A run killed at any moment leaves the previous checkpoint intact. Files are weights-only dicts
(``model``, ``config``, ``state_dict``, ``meta``; ``train_state`` in ``last.pt`` for --resume), read back with
``torch.load(..., weights_only=True)``.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch


def save_atomic(obj: dict, path: str | Path, keep_previous: str | Path | None = None) -> None:
    """Write ``obj`` to ``path`` through a complete temporary file; with ``keep_previous``, the file it replaces
    is kept under that name (so a checkpoint damaged later still has a good predecessor)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; checkpoints are ordinary files
        if keep_previous is not None and path.exists():
            os.replace(path, keep_previous)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def weights_only(ckpt: dict) -> dict:
    """The shippable part of a checkpoint: no optimizer or discriminator state."""
    return {k: ckpt[k] for k in ("model", "config", "state_dict", "meta") if k in ckpt}
