"""ONNX: NCHW float32 input ``image`` with dynamic height and width, output ``enhanced`` (the decomposer:
``albedo`` and ``shading``); opset 17.

fp16: weights and compute in float16 with float32 I/O (onnxruntime's float16 converter, keep_io_types).
int8: QDQ static quantization by onnxruntime.quantization, per-channel int8 weights, int8 activations
calibrated on the calibration images (QuantizeLinear/DequantizeLinear around every convolution).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .common import ExportSpec
from .io import join_outputs

SUFFIX = ".onnx"
PRECISIONS = ("fp32", "fp16", "int8")
INPUT, OUTPUT = "image", "enhanced"
OPSET = 17


def _require(module: str, extra: str = "onnx"):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        from .common import MissingBackend
        raise MissingBackend(f"ONNX export needs {module.split('.')[0]}: pip install 'dslr-mobile[{extra}]' "
                          f"({err})") from None


def convert(model: nn.Module, spec: ExportSpec, path: Path, metadata: dict,
            calibration: list[np.ndarray] | None = None) -> None:
    onnx = _require("onnx")
    _require("onnxruntime")
    precision = spec.precision
    sample = torch.rand(1, 3, *spec.size)
    outputs = list(model.contract.output_names) if hasattr(model, "contract") else [OUTPUT]
    axes = None if spec.fixed_size else {name: {2: "height", 3: "width"} for name in [INPUT, *outputs]}
    with warnings.catch_warnings():  # shape arithmetic (padding to a size multiple) is constant at any legal size
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(model.eval(), (sample,), str(path), input_names=[INPUT], output_names=outputs,
                          opset_version=OPSET, dynamic_axes=axes, dynamo=False)
    if precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        onnx.save(convert_float_to_float16(onnx.load(str(path)), keep_io_types=True), str(path))
    elif precision == "int8":
        from quantize.onnx import quantize_static_qdq

        quantize_static_qdq(path, path, calibration or [])
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value, default=str)
    onnx.save(proto, str(path))


def run(path: str | Path, image: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Run on one float32 (H, W, 3) image with ONNX Runtime's CPU provider."""
    ort = _require("onnxruntime")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)
    names = [o.name for o in session.get_outputs()]
    return join_outputs(dict(zip(names, session.run(names, {INPUT: x}))), axis=1)[0].transpose(1, 2, 0)
