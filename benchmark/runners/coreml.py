"""Core ML (macOS only). Elsewhere the row is skipped; quality comes from the export's emulation."""
from __future__ import annotations

import platform
from typing import Callable

import numpy as np

from export.io import join_outputs  # numpy only

NAME, TARGET = "coreml", "coreml"


def unavailable() -> str | None:
    if platform.system() != "Darwin":
        return "Core ML runs only on macOS"
    try:
        import coremltools  # noqa: F401
    except ImportError:
        return "coremltools is not installed (pip install 'dslr-mobile[coreml]')"
    return None


def load(source: str, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import coremltools as ct

    model = ct.models.MLModel(source, compute_units=ct.ComputeUnit.CPU_ONLY)

    def run(image: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)
        return join_outputs(model.predict({"image": x}), axis=1)[0].transpose(1, 2, 0)

    return run
