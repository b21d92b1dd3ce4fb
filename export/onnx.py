"""ONNX: NCHW float32 input ``image`` with dynamic height and width, output ``enhanced`` (the decomposer:
``albedo`` and ``shading``); opset 17. Image-adaptive models also take ``thumbnail`` (1, 3, S, S), fixed size.

fp16: weights and compute in float16 with float32 I/O (onnxruntime's float16 converter, keep_io_types).
int8: QDQ static quantization by onnxruntime.quantization, per-channel int8 weights, uint8 activations
calibrated on the calibration images (QuantizeLinear/DequantizeLinear around every convolution but those
``spec.float_layers`` keeps in float), with ``spec.method`` calibration (percentile by default, see README).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from artifacts.io import THUMBNAIL
from models.contract import thumbnail_size

from .common import ExportSpec

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


def choose_float_layers(model: nn.Module, spec: ExportSpec, calibration: list[np.ndarray],
                        inputs: list[tuple[str, np.ndarray]], out: Path,
                        progress: Callable[[str], None] | None = None,
                        reference: list[np.ndarray] | None = None, converted_db: float | None = None
                        ) -> list[list[str]]:
    """--fidelity-target on int8: the layers to keep in float so that the file reaches the target, measured by
    re-quantizing the float file with onnxruntime (``quantize.sensitivity``), as the one choice to convert; the
    export gate then measures the result. ``reference``: the outputs to score against on ``inputs`` (the gate's:
    the unchanged model's), default the float file's own. ``converted_db`` is not needed: these trials are files
    run by the gate's runtime, so they measure what the converted file gives."""
    from dataclasses import replace

    from artifacts.targets import remove_artifact
    from quantize.sensitivity import Trials, choose_float_layers as choose

    fp32 = out / f".{spec.stem}.float-for-mixed.onnx"
    try:
        convert(model, replace(spec, precision="fp32", fidelity_target=None, float_layers=()), fp32, None)
        trials = Trials(fp32, calibration, inputs, method=spec.method, reference=reference)
        try:
            layers, _, _ = choose(trials, spec.fidelity_target, progress=progress)
        finally:
            trials.close()
    finally:
        remove_artifact(fp32)
    return [layers]


def convert(model: nn.Module, spec: ExportSpec, path: Path, calibration: list[np.ndarray] | None = None) -> None:
    _require("onnx")
    _require("onnxruntime")
    precision = spec.precision
    size = thumbnail_size(model)
    args = (torch.rand(1, 3, *spec.size), *((torch.rand(1, 3, size, size),) if size else ()))
    inputs = [INPUT, THUMBNAIL] if size else [INPUT]
    outputs = list(model.contract.output_names) if hasattr(model, "contract") else [OUTPUT]
    axes = None if spec.fixed_size else {name: {2: "height", 3: "width"} for name in [INPUT, *outputs]}
    with warnings.catch_warnings():  # shape arithmetic (padding to a size multiple) is constant at any legal size
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(model.eval(), args, str(path), input_names=inputs, output_names=outputs,
                          opset_version=OPSET, dynamic_axes=axes, dynamo=False)
    if precision == "fp16":
        from quantize.onnx import to_float16

        to_float16(path, path)
    elif precision == "int8":
        from quantize.onnx import quantize_static_qdq

        quantize_static_qdq(path, path, calibration or [], method=spec.method, float_layers=spec.float_layers)
