"""ONNX Runtime, CPU execution provider."""
from __future__ import annotations

from typing import Callable

import numpy as np

from export.io import join_outputs  # numpy only

NAME, TARGET = "onnxruntime", "onnx"


def unavailable() -> str | None:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "onnxruntime is not installed (pip install 'dslr-mobile[onnx]')"
    return None


def load(source: str, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])

    names = [o.name for o in session.get_outputs()]

    def run(image: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)
        return join_outputs(dict(zip(names, session.run(names, {"image": x}))), axis=1)[0].transpose(1, 2, 0)

    return run
