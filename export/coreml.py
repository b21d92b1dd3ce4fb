"""Core ML: an ML program (.mlpackage) with a flexible input size, via coremltools (converts on any OS).

Precisions: fp32 and fp16 (compute precision); int8 (weights linearly quantized, symmetric per channel) and
palettized (weights as a 6-bit k-means look-up table), both with fp16 compute, by coremltools.optimize.

I/O: float32 MultiArrays by default, whatever the compute precision (what an app's MLMultiArray code expects;
Core ML casts at the ends). ``--coreml-io float16`` keeps float16 I/O (ML programs' own default for fp16 compute:
no casts, half the I/O memory). The sidecar states the dtype the saved spec declares.

Running a Core ML model needs macOS. Elsewhere the fidelity gate checks the saved program instead (compute
precision, compression ops present) and estimates numerics by emulating the precision in PyTorch; such figures are
labelled 'emulated', never as measured by Core ML.
"""
from __future__ import annotations

import copy
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

from artifacts.io import THUMBNAIL
from models.contract import thumbnail_size
from artifacts.quiet import quiet

from .common import ExportSpec, MissingBackend, torch_reference

INPUT, OUTPUT = "image", "enhanced"
IO_DTYPES = ("float32", "float16")
PALETTE_BITS = 6
WEIGHT_THRESHOLD = 256  # compress every weight with at least this many elements (depthwise 3x3x64 included)
COMPRESSION_OPS = {"int8": ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale"),
                   "palettized": ("constexpr_lut_to_dense",)}


def _ct():
    try:
        with quiet():
            import coremltools as ct
    except ImportError as err:
        raise MissingBackend(f"Core ML export needs coremltools: pip install 'dslr-mobile[coreml]' ({err})") from None
    return ct


def convert(model: nn.Module, spec: ExportSpec, path: Path, calibration: list[np.ndarray] | None = None) -> None:
    ct = _ct()
    h, w = spec.size
    with warnings.catch_warnings():  # shape arithmetic (padding to a size multiple) is constant at any legal size
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        size = thumbnail_size(model)
        args = (torch.rand(1, 3, h, w), *((torch.rand(1, 3, size, size),) if size else ()))
        traced = torch.jit.trace(model.eval(), args, check_trace=False)
    dims = (h, w) if spec.fixed_size else tuple(ct.RangeDim(16, 8192, default=d) for d in (h, w))
    precision = ct.precision.FLOAT32 if spec.precision == "fp32" else ct.precision.FLOAT16
    if spec.coreml_io not in IO_DTYPES:
        raise ValueError(f"--coreml-io must be one of {', '.join(IO_DTYPES)}, got {spec.coreml_io!r}")
    io = np.float32 if spec.coreml_io == "float32" or spec.precision == "fp32" else np.float16
    with quiet():  # coremltools prints progress bars for every pass
        names = model.contract.output_names if hasattr(model, "contract") else (OUTPUT,)
        inputs = [ct.TensorType(name=INPUT, shape=ct.Shape(shape=(1, 3, *dims)), dtype=io)]
        if size:  # image-adaptive: the whole photo's thumbnail, fixed size
            inputs.append(ct.TensorType(name=THUMBNAIL, shape=(1, 3, size, size), dtype=io))
        ml = ct.convert(traced, inputs=inputs,
                        outputs=[ct.TensorType(name=n, dtype=io) for n in names], convert_to="mlprogram",
                        compute_precision=precision,
                        minimum_deployment_target=ct.target.iOS16)
        ml = _compress(ml, spec.precision)
    ml.short_description = "dslr-mobile photo enhancer: RGB [0, 1] NCHW in, enhanced RGB [0, 1] out"
    ml.input_description[INPUT] = f"RGB photo, {np.dtype(io).name} NCHW, values in [0, 1], any H x W"
    if size:
        ml.input_description[THUMBNAIL] = (f"thumbnail of the whole photo ({size}x{size} cell means, "
                                           f"artifacts/thumbnail.py), {np.dtype(io).name} NCHW, values in [0, 1]")
    for name in names:
        ml.output_description[name] = f"{name}: RGB, {np.dtype(io).name}, same height, width and range as the input"
    ml.save(str(path))


def _compress(ml, precision: str):
    from coremltools.optimize import coreml as opt

    if precision == "int8":
        return opt.linear_quantize_weights(ml, opt.OptimizationConfig(global_config=opt.OpLinearQuantizerConfig(
            mode="linear_symmetric", dtype="int8", granularity="per_channel", weight_threshold=WEIGHT_THRESHOLD)))
    if precision == "palettized":
        try:
            return opt.palettize_weights(ml, opt.OptimizationConfig(global_config=opt.OpPalettizerConfig(
                nbits=PALETTE_BITS, mode="kmeans", weight_threshold=WEIGHT_THRESHOLD)))
        except ModuleNotFoundError as err:
            raise MissingBackend(f"k-means palettization needs scikit-learn: pip install 'dslr-mobile[coreml]' "
                                 f"({err})") from None
    return ml


def program_summary(path: str | Path) -> dict:
    """What the saved ML program holds: op counts, compute precision, compression ops."""
    ct = _ct()
    ml = ct.models.MLModel(str(path), skip_model_load=True)
    from coremltools.proto import MIL_pb2

    fn = ml.get_spec().mlProgram.functions["main"]
    operations = fn.block_specializations[fn.opset].operations
    ops = Counter(op.type for op in operations)
    conv_types = {MIL_pb2.DataType.Name(op.outputs[0].type.tensorType.dataType)
                  for op in operations if op.type == "conv"}
    return {"ops": dict(sorted(ops.items())), "opset": fn.opset,
            "compute_precision": "fp16" if conv_types == {"FLOAT16"} else "fp32",
            "compression_ops": {k: v for k, v in ops.items() if k.startswith("constexpr")}}


def check_program(path: Path, precision: str) -> list[str]:
    """Problems with the saved program for this precision (empty when it is what was asked for)."""
    summary, problems = program_summary(path), []
    if summary["compute_precision"] != ("fp32" if precision == "fp32" else "fp16"):
        problems.append(f"compute precision is {summary['compute_precision']}")
    wanted = COMPRESSION_OPS.get(precision, ())
    if wanted and not any(op in summary["compression_ops"] for op in wanted):
        problems.append(f"no {'/'.join(wanted)} op: weights were not compressed")
    return problems


def _emulated_model(model: nn.Module, precision: str) -> nn.Module:
    """PyTorch stand-in for the Core ML numerics: compressed weights, then fp16 rounding (except fp32).

    fp16 is emulated by rounding weights and each layer's output to float16 while computing in float32
    (PyTorch's float16 convolutions on CPU are orders of magnitude slower); Core ML's fp16 accumulation
    can differ slightly, hence the label 'emulated'.
    """
    emu = copy.deepcopy(model).eval()
    with torch.no_grad():
        for m in emu.modules():
            if not isinstance(m, nn.Conv2d) or m.weight.numel() < WEIGHT_THRESHOLD:
                continue
            wt = m.weight
            if precision == "int8":  # symmetric per output channel, as linear_symmetric does
                scale = wt.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12) / 127
                m.weight.copy_(torch.round(wt / scale).clamp(-127, 127) * scale)
            elif precision == "palettized":  # 2**bits levels per tensor from 1-D k-means
                m.weight.copy_(torch.from_numpy(_kmeans_1d(wt.flatten().numpy(), 2 ** PALETTE_BITS))
                               .view_as(wt))
    if precision != "fp32":  # fp16 storage: weights and every layer's output rounded to float16
        for p in emu.parameters():
            p.data = p.data.half().float()
        for m in emu.modules():
            if not list(m.children()):
                m.register_forward_hook(lambda _m, _i, out: out.half().float())
    return emu


def _kmeans_1d(values: np.ndarray, k: int, iters: int = 30) -> np.ndarray:
    centers = np.quantile(values, np.linspace(0, 1, k))
    for _ in range(iters):
        idx = np.abs(values[:, None] - centers[None]).argmin(1)
        for c in range(k):
            if np.any(idx == c):
                centers[c] = values[idx == c].mean()
    return centers[np.abs(values[:, None] - centers[None]).argmin(1)].astype(values.dtype)


_emulated: dict = {}


def emulate(model: nn.Module, precision: str, image: np.ndarray) -> np.ndarray:
    """Estimated Core ML output for (H, W, 3) ``image``: the precision emulated in PyTorch."""
    key = (id(model), precision)
    if key not in _emulated:
        _emulated.clear()
        _emulated[key] = _emulated_model(model, precision)
    image = np.asarray(image, dtype=np.float32)
    return torch_reference(_emulated[key], image if precision == "fp32" else image.astype(np.float16).astype(np.float32))
