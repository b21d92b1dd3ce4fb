"""TensorRT engines on a CUDA GPU."""
from __future__ import annotations

from typing import Callable

import numpy as np

NAME, TARGET = "tensorrt", "tensorrt"


def unavailable() -> str | None:
    from export.tensorrt import missing

    gaps = missing()
    return f"TensorRT needs {' and '.join(gaps)}" if gaps else None


def load(source: str, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    from export.tensorrt import engine_runner

    return engine_runner(source)
