"""One loader per runtime. Each module has:

    NAME: str                                   the runtime's name in results
    TARGET: str | None                          the export target whose artifacts it runs (None: PyTorch eager)
    unavailable() -> str | None                 why it cannot run on this machine, or None
    load(source, threads) -> Callable           the callable maps float32 (H, W, 3) in [0, 1] to the outputs
                                                (H, W, C), several outputs joined in name order; an image-adaptive
                                                model's also takes ``thumbnail=`` (the whole photo's, for a tile;
                                                default: the image's own, artifacts.thumbnail)
    describe(path) -> dict                      artifacts only: what the runtime reports about the I/O tensors
    embedded(path) -> dict[str, str]            artifacts only: the metadata stored in the file

Only the module of the runtime in use is imported, so a process that runs LiteRT holds no ONNX Runtime, Core ML
or PyTorch (its peak memory is honest).
"""
from __future__ import annotations

from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import Callable

import numpy as np

from ..targets import TARGETS, target_of

RUNTIMES = ("pytorch", *dict.fromkeys(t.runtime for t in TARGETS.values()))


def runtime(name: str) -> ModuleType:
    if name not in RUNTIMES:
        raise ValueError(f"unknown runtime {name!r}; known: {', '.join(RUNTIMES)}")
    return import_module(f"{__name__}.{name}")


def runtime_for(path: str | Path) -> ModuleType:
    """The runtime module that runs an artifact, by its suffix."""
    return runtime(target_of(path).runtime)


def load(path: str | Path, threads: int | None = None) -> Callable[..., np.ndarray]:
    """Load an artifact in its runtime. Raises RuntimeError when that runtime cannot run on this machine."""
    mod = runtime_for(path)
    reason = mod.unavailable()
    if reason:
        raise RuntimeError(f"cannot run {Path(path).name} here: {reason}")
    return mod.load(path, threads)
