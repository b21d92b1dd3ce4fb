"""LiteRT (ai-edge-litert) with the XNNPACK CPU delegate, per thread count. Imports no PyTorch, so the
child's peak memory is LiteRT's."""
from __future__ import annotations

from typing import Callable

import numpy as np

from export.io import dequantize_output, join_outputs, quantize_input  # numpy only

NAME, TARGET = "litert", "tflite"
SIGNATURE, INPUT = "enhance", "image"  # the export contract (export/tflite.py)


def unavailable() -> str | None:
    try:
        import ai_edge_litert  # noqa: F401
    except ImportError:
        return "ai-edge-litert is not installed (pip install ai-edge-litert)"
    return None


def load(source: str, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=source, num_threads=threads)
    index = interp.get_input_details()[0]["index"]
    state: dict = {"shape": None, "runner": None}

    def run(image: np.ndarray) -> np.ndarray:
        shape = (1, image.shape[0], image.shape[1], 3)
        if state["shape"] != shape:  # resize once per new size, then reuse the allocated graph
            state["runner"] = None
            interp.resize_tensor_input(index, shape, strict=False)
            interp.allocate_tensors()
            state["shape"], state["runner"] = shape, interp.get_signature_runner(SIGNATURE)
            state["in"] = state["runner"].get_input_details()[INPUT]
            state["out"] = state["runner"].get_output_details()
        runner = state["runner"]
        outputs = runner(**{INPUT: quantize_input(image[None].astype(np.float32), state["in"])})
        return join_outputs({k: dequantize_output(v, state["out"][k]) for k, v in outputs.items()})[0]

    return run
