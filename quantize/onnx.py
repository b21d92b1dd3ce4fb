"""ONNX recipes: int8 QDQ static quantization with onnxruntime.quantization (per-channel int8 weights), and
float16 with float32 I/O."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


def quantize_static_qdq(src: Path, dst: Path, calibration: list[np.ndarray], input_name: str = "image") -> None:
    """Calibrate activations on (H, W, 3) float images and write a QDQ int8 model to ``dst``."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise ValueError("int8 quantization needs calibration images")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter([{input_name: np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32)}
                             for img in calibration])

        def get_next(self):
            return next(self._it, None)

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)


def to_float16(src: Path, dst: Path) -> None:
    """fp16 weights and compute, float32 I/O (onnxruntime's float16 converter with keep_io_types).

    The converter appends the input casts at the end of the node list; ONNX Runtime runs that, but onnx.checker
    (and other tools) require topological order, so the graph is sorted before saving."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True))
    model.topological_sort()
    onnx.save(model.model, str(dst))
