"""TFLite through litert-torch (no TensorFlow): NHWC float I/O, named signature, metadata entries.

The artifact has one signature ``enhance`` with input ``image`` (1, H, W, 3) float32 RGB in [0, 1] and output
``enhanced`` of the same shape (the intrinsic decomposer: outputs ``albedo`` and ``shading``). The graph is fully convolutional: LiteRT's ``resize_tensor_input`` runs it at any
H x W unless it was exported with a fixed --size.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .common import ExportSpec, quiet as _quiet
from .io import dequantize_output, join_outputs, quantize_input

SUFFIX = ".tflite"
PRECISIONS = ("fp32", "fp16", "dynamic-int8", "int8")
PACKAGES = ("litert-torch", "ai-edge-litert")
SIGNATURE, INPUT, OUTPUT = "enhance", "image", "enhanced"
METADATA_NAME = "dslr_mobile"


class NHWCEnhancer(nn.Module):
    """Channel-last wrapper with named I/O (the contract's output names); litert-torch's layout pass removes the
    permutes."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.names = model.contract.output_names if hasattr(model, "contract") else (OUTPUT,)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        y = self.model(image.permute(0, 3, 1, 2))
        ys = y if isinstance(y, tuple) else (y,)
        return {name: t.permute(0, 2, 3, 1) for name, t in zip(self.names, ys)}


def shuffles_as_transposed_convs(model: nn.Module, channels: int = 3) -> nn.Module:
    """A copy of ``model`` with every pixel shuffle replaced by the identical fixed-weight transposed conv.

    litert-torch lowers ``pixel_shuffle`` to reshapes and transposes of static shape, which pins the graph to its
    export size. A 2x2 stride-2 transposed conv with one-hot weights computes exactly the same (output channel k
    at offset (a, b) = input channel 4k + 2a + b), is one NHWC-native TRANSPOSE_CONV and resizes. Dense, it costs
    4 x C^2 multiply-adds per output pixel (grouped ones are split per group and lose resizing).
    """
    shuffles = {name: m for name, m in model.named_modules() if isinstance(m, nn.PixelShuffle)}
    if not shuffles:
        return model
    seen: dict[str, int] = {}

    def record(name: str):
        def hook(_mod, inp, _out) -> None:
            seen[name] = inp[0].shape[1]
        return hook

    hooks = [m.register_forward_hook(record(name)) for name, m in shuffles.items()]
    try:
        with torch.no_grad():
            model(torch.zeros(1, channels, 64, 64))
    finally:
        for h in hooks:
            h.remove()
    model = copy.deepcopy(model)
    for name, shuffle in shuffles.items():
        r, cin = shuffle.upscale_factor, seen[name]
        cout = cin // (r * r)
        conv = nn.ConvTranspose2d(cin, cout, r, stride=r, bias=False)
        weight = torch.zeros(cin, cout, r, r)
        for k in range(cout):
            for a in range(r):
                for b in range(r):
                    weight[k * r * r + a * r + b, k, a, b] = 1.0
        conv.weight.data = weight
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attr, conv)
    return model


def _require_litert_torch():
    try:
        with _quiet():
            import litert_torch
    except ImportError as err:
        from .common import MissingBackend
        raise MissingBackend(f"TFLite export needs litert-torch: pip install litert-torch ({err})") from None
    return litert_torch


def convert(model: nn.Module, spec: ExportSpec, path: Path, metadata: dict,
            calibration: list[np.ndarray] | None = None) -> None:
    """Convert an eval-mode (BN-folded) model traced at ``spec.size`` (H, W) and write it to ``path``.

    fp32: plain conversion. int8: PT2E static quantization calibrated on ``calibration`` (float I/O).
    fp16 / dynamic-int8: the fp32 file compressed by ai-edge-quantizer.
    """
    from quantize import tflite as recipes

    litert_torch = _require_litert_torch()
    module = NHWCEnhancer(shuffles_as_transposed_convs(model)).eval()
    precision, (h, w) = spec.precision, spec.size
    sample = {INPUT: torch.rand(1, h, w, 3)}
    with _quiet():
        if precision == "int8":
            if not calibration:
                raise ValueError("int8 export needs calibration images")
            calib = [{INPUT: torch.from_numpy(np.array(img))[None]} for img in calibration]
            module, config = recipes.pt2e_int8(module, sample, calib)
            edge = litert_torch.signature(SIGNATURE, module, sample_kwargs=sample).convert(quant_config=config)
        else:
            edge = litert_torch.signature(SIGNATURE, module, sample_kwargs=sample).convert()
        edge.export(str(path))
    # Metadata first: ai-edge-quantizer keeps it, while re-packing its output would drop the weight data it
    # may place after the flatbuffer (larger models such as dped).
    add_metadata(path, {METADATA_NAME: json.dumps(metadata, default=str)})
    if precision in ("fp16", "dynamic-int8"):
        with _quiet():
            recipes.compress(path, path, precision)


def add_metadata(path: Path, entries: dict[str, str]) -> None:
    """Store string entries in the flatbuffer's metadata table (readable with ``read_metadata``)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    model.metadata = [m for m in (model.metadata or []) if m.name.decode() not in entries] \
        if model.metadata else []
    for name, text in entries.items():
        buf = schema.BufferT()
        buf.data = np.frombuffer(text.encode(), dtype=np.uint8)
        model.buffers.append(buf)
        entry = schema.MetadataT()
        entry.name, entry.buffer = name, len(model.buffers) - 1
        model.metadata.append(entry)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))


def read_metadata(path: str | Path) -> dict[str, str]:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(Path(path).read_bytes(), 0)
    out = {}
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        data = model.Buffers(entry.Buffer()).DataAsNumpy()
        out[entry.Name().decode()] = bytes(data).decode(errors="replace") if not isinstance(data, int) else ""
    return out


def op_names(path: str | Path) -> list[str]:
    """Builtin op names of the graph, in order (e.g. to check for Transpose or int8 convolutions)."""
    interp = _interpreter(path)
    return [op["op_name"] for op in interp._get_ops_details()]  # noqa: SLF001 - the only op listing LiteRT has


def _interpreter(path: str | Path, threads: int | None = None):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path), num_threads=threads)


def input_hw(path: str | Path) -> tuple[int, int]:
    """(H, W) the artifact was exported at."""
    with _quiet():
        shape = _interpreter(path).get_input_details()[0]["shape"]
    return int(shape[1]), int(shape[2])


def run(path: str | Path, image: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Run the artifact on one float32 (H, W, 3) image in [0, 1]; resizes the input to the image's size."""
    with _quiet():
        interp = _interpreter(path, threads)
    inp = interp.get_input_details()[0]
    shape = [1, image.shape[0], image.shape[1], 3]
    with _quiet():  # the XNNPACK delegate announces itself on stderr
        if list(inp["shape"]) != shape:
            interp.resize_tensor_input(inp["index"], shape, strict=False)
        interp.allocate_tensors()
    runner = interp.get_signature_runner(SIGNATURE)
    details = runner.get_input_details()[INPUT], runner.get_output_details()
    outputs = runner(**{INPUT: quantize_input(image[None].astype(np.float32), details[0])})
    return join_outputs({k: dequantize_output(v, details[1][k]) for k, v in outputs.items()})[0]


def io_spec(path: str | Path) -> dict:
    """dtype (and scale / zero point when integer) of the artifact's signature input and outputs, for the sidecar:
    a full-integer graph may take and give int8 where the converter could not keep float I/O."""
    with _quiet():
        runner = _interpreter(path).get_signature_runner(SIGNATURE)

    def spec(detail: dict) -> dict:
        dtype = np.dtype(detail["dtype"]).name
        if np.dtype(dtype).kind == "f":
            return {"dtype": dtype}
        scale, zero_point = detail["quantization"]
        return {"dtype": dtype, "quantization": {"scale": float(scale), "zero_point": int(zero_point)}}

    return {"input": spec(runner.get_input_details()[INPUT]),
            "outputs": {k: spec(v) for k, v in runner.get_output_details().items()}}
