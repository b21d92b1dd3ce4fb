"""TensorRT: a serialized engine (.engine) built from the ONNX export, on a CUDA machine with TensorRT.

fp32 / fp16: builder flags on the fp32 ONNX. int8: explicit quantization, the QDQ ONNX of ``quantize.onnx`` (the
implicit INT8 calibrators are deprecated in TensorRT 10). One optimization profile covers MIN_HW..MAX_HW with the
export size as the optimum. Engines are specific to the GPU and TensorRT version that built them.

Without CUDA or TensorRT, ``convert`` says exactly what is missing; ``prepare`` writes what ``trtexec`` needs on
the GPU machine instead: the ONNX with the dynamic-shape profile, the calibration tensors, and the command line.
"""
from __future__ import annotations

import shlex
import tempfile
from pathlib import Path

import numpy as np
from torch import nn

from artifacts import TARGETS
from artifacts.runtimes.tensorrt import missing

from .common import ExportError, ExportSpec, MissingBackend

SUFFIX = TARGETS["tensorrt"].suffix
INPUT = "image"
MIN_HW, MAX_HW = (64, 64), (2160, 3840)


def _onnx(model: nn.Module, spec: ExportSpec, path: Path, calibration: list[np.ndarray] | None) -> None:
    from . import onnx as onnx_target

    onnx_spec = ExportSpec(**{**spec.__dict__, "target": "onnx",
                              "precision": "int8" if spec.precision == "int8" else "fp32"})
    onnx_target.convert(model, onnx_spec, path, calibration)


def profile_shapes(spec: ExportSpec) -> dict[str, tuple[int, int, int, int]]:
    if spec.fixed_size:
        return {k: (1, 3, *spec.size) for k in ("min", "opt", "max")}
    return {"min": (1, 3, *MIN_HW), "opt": (1, 3, *spec.size), "max": (1, 3, *MAX_HW)}


def trtexec_command(spec: ExportSpec, onnx_path: Path, engine_path: Path) -> str:
    shapes = {k: "x".join(map(str, v)) for k, v in profile_shapes(spec).items()}
    flags = {"fp32": [], "fp16": ["--fp16"], "int8": ["--int8", "--fp16"]}[spec.precision]
    return shlex.join(["trtexec", f"--onnx={onnx_path.name}", f"--minShapes={INPUT}:{shapes['min']}",
                       f"--optShapes={INPUT}:{shapes['opt']}", f"--maxShapes={INPUT}:{shapes['max']}", *flags,
                       f"--saveEngine={engine_path.name}"])


def prepare(model: nn.Module, spec: ExportSpec, out: Path, calibration: list[np.ndarray] | None) -> dict:
    """Write ``<stem>.trt.onnx``, ``<stem>.calibration.npy`` (int8) and return the trtexec command line."""
    onnx_path = out / f"{spec.stem}.trt.onnx"
    _onnx(model, spec, onnx_path, calibration)
    files = {"onnx": str(onnx_path)}
    if calibration:
        calib_path = out / f"{spec.stem}.calibration.npy"
        np.save(calib_path, np.stack([c.transpose(2, 0, 1) for c in calibration]).astype(np.float32))
        files["calibration"] = str(calib_path)
    return {"files": files, "profile": profile_shapes(spec),
            "trtexec": trtexec_command(spec, onnx_path, out / f"{spec.stem}{SUFFIX}")}


def convert(model: nn.Module, spec: ExportSpec, path: Path, calibration: list[np.ndarray] | None = None) -> None:
    gaps = missing()
    if gaps:
        raise MissingBackend(f"TensorRT engines need {' and '.join(gaps)}. On this machine, "
                          f"--trt-prepare writes the ONNX, calibration tensors and trtexec command instead.")
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        _onnx(model, spec, onnx_path, calibration)
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(onnx_path.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ExportError(f"TensorRT could not parse the ONNX: {errors}")
    config = builder.create_builder_config()
    if spec.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if spec.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    profile = builder.create_optimization_profile()
    shapes = profile_shapes(spec)
    profile.set_shape(INPUT, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise ExportError("TensorRT failed to build the engine (see the TensorRT log above)")
    path.write_bytes(bytes(engine))
