"""ONNX recipes: int8 QDQ static quantization with onnxruntime.quantization (per-channel 8-bit weights, uint8
activations), and float16 with float32 I/O.

Why uint8 activations: on x86 CPUs without VNNI, ONNX Runtime's optimizer fuses a QDQ Conv into QLinearConv only
for uint8 activations with int8 weights (its "U8S8" kernels). With int8 activations it left the stem and the first
conv of every residual block in float between a DequantizeLinear and a QuantizeLinear, and the adds too, so the
int8 file ran no faster than fp32. With uint8 every Conv, LeakyRelu and Add of the DPED family fuses (tested on the
optimized graph); ARM runtimes take the same QDQ file.

Why 8-bit weights are safe: those U8S8 kernels add pairs of uint8 x int8 products in saturating int16 on x86 CPUs
without VNNI, so 8-bit weights against wide activations overflow there. On exactly those CPUs every session the
project opens sets ONNX Runtime's ``session.x64quantprecision`` (``artifacts.runtimes.onnxruntime.open_session``),
and ONNX Runtime then runs the weights as uint8 through its exact U8U8 kernels; on VNNI and ARM the default kernels
are exact, and the entry is not set (it cost 35 % of the time on a VNNI CPU). Files made before kept 7-bit weights
(``reduce_range``) for that reason; 8-bit weights gained 0.5 to 2.3 dB of fidelity on five of the six shipped
models (README, "8-bit ONNX weights again"). The sidecar records the weights' range (``calibration.weight_qmax``)."""
from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np

from artifacts.io import THUMBNAIL
from artifacts.thumbnail import thumbnail


# onnxruntime CalibrationMethod. Not Entropy: quantize_static cannot set its histogram sizes, and with its fixed
# 128 bins for 128 quantized bins the search has one candidate, the full range (measured: identical to MinMax).
METHODS = {"minmax": "MinMax", "percentile": "Percentile"}


def layer_of(node_name: str, op_type: str) -> str:
    """A node's layer name: the PyTorch module a Conv came from (``/blocks/blocks.0/body/body.0/conv/Conv`` ->
    ``blocks.0.body.0.conv``: the exporter's scope path without the containers' repeated names); other ops add
    their node's own name (``/blocks/blocks.0/Add`` -> ``blocks.0:Add``, ``/Sub`` -> ``Sub``)."""
    parts = node_name.strip("/").split("/")
    scope = parts[:-1]
    module = ".".join(p for i, p in enumerate(scope) if not (i + 1 < len(scope) and scope[i + 1].startswith(p + ".")))
    if op_type == "Conv" and module:
        return module
    return f"{module}:{parts[-1]}" if module else parts[-1]


# Op types every int8 file keeps in float. Gemm: the fully connected layers of these networks map one vector per
# photo (the global branch's head, mdie's label embedding), a few thousand multiply-adds per photo, and the global
# branch's output shifts every pixel's features, so its int8 rounding is broadcast over the whole image. Measured on
# dped_mobile (4 calibration crops, 512x512, 8-bit weights): all-int8 41.67 dB against the fp32 file, with its Gemms
# in float 45.22 dB; mdie 41.61 dB both ways (README, Compression).
FLOAT_OPS = ("Gemm",)


def quantizable_layers(path: Path, op_types: bool = False) -> dict[str, str]:
    """{layer name: node name} (with ``op_types``: {layer name: op type}) of the nodes onnxruntime's quantizer puts
    in int8, in graph order (convs, and the activations, adds and clips between them); not ``FLOAT_OPS``."""
    import onnx
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    kinds = (set(QLinearOpsRegistry) | set(QDQRegistry) | {"Sub"}) - set(FLOAT_OPS)
    return {layer_of(n.name, n.op_type): n.op_type if op_types else n.name
            for n in onnx.load(str(path)).graph.node if n.op_type in kinds}


def float_nodes(path: Path) -> list[str]:
    """The nodes of ``FLOAT_OPS``, which every int8 file keeps in float."""
    import onnx

    return [n.name for n in onnx.load(str(path)).graph.node if n.op_type in FLOAT_OPS]


def _nchw(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32)


def thumbnail_size(path: Path) -> int:
    """The side of the model's ``thumbnail`` input (an image-adaptive model), 0 when it has none."""
    import onnx

    for inp in onnx.load(str(path), load_external_data=False).graph.input:
        if inp.name == THUMBNAIL:
            return int(inp.type.tensor_type.shape.dim[2].dim_value)
    return 0


def preprocess(src: Path, dst: Path) -> None:
    """onnxruntime's pre-quantization pass (shape inference, graph optimisation): run once, then quantize."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)


def calibration_reader(path: Path, calibration: list[np.ndarray], input_name: str = "image"):
    """An onnxruntime CalibrationDataReader over (H, W, 3) float images, each with its own thumbnail for an
    image-adaptive model."""
    from onnxruntime.quantization import CalibrationDataReader

    size = thumbnail_size(path)
    feeds = [{input_name: _nchw(img), **({THUMBNAIL: _nchw(thumbnail(img, size))} if size else {})}
             for img in calibration]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def __len__(self) -> int:
            return len(feeds)

        def set_range(self, start_index: int, end_index: int) -> None:  # onnxruntime's strided calibration
            self._it = iter(feeds[start_index:end_index])

        def get_next(self):
            return next(self._it, None)

    return Reader()


def quantize_static_qdq(src: Path, dst: Path, calibration: list[np.ndarray], input_name: str = "image",
                        method: str = "minmax", float_layers: tuple[str, ...] = (),
                        only_layers: tuple[str, ...] | None = None, preprocessed: bool = False,
                        cache: Path | None = None) -> None:
    """Calibrate activations on (H, W, 3) float images and write a QDQ int8 model to ``dst``.

    ``method``: onnxruntime's MinMax or Percentile (99.999th) calibration. ``float_layers``: layers
    (``quantizable_layers`` names) left in float; ``only_layers``: quantize these alone. ``preprocessed``: ``src``
    has been through ``preprocess`` already. ``cache``: onnxruntime's calibration cache, a JSON file of every
    tensor's range: written by the first call, read by the next ones (which then skip calibration). The ranges do
    not depend on which layers stay in float, so the trials of one file share them."""
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    if not calibration:
        raise ValueError("int8 quantization needs calibration images")
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r} for ONNX; choose from {', '.join(METHODS)}")

    reader = calibration_reader(src, calibration, input_name)
    with tempfile.TemporaryDirectory() as tmp:
        pre = src
        if not preprocessed:
            pre = Path(tmp) / "pre.onnx"
            preprocess(src, pre)
        nodes = quantizable_layers(pre)
        unknown = sorted((set(float_layers) | set(only_layers or ())) - set(nodes))
        if unknown:
            raise ValueError(f"no layer named {', '.join(unknown)}; layers: {', '.join(nodes)}")
        with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print their progress
            quantize_static(str(pre), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=False,
                            calibrate_method=getattr(CalibrationMethod, METHODS[method]),
                            nodes_to_exclude=[nodes[layer] for layer in float_layers] + float_nodes(pre),
                            nodes_to_quantize=None if only_layers is None else [nodes[layer] for layer in only_layers],
                            # one image at a time: the calibrators keep every activation of what they are
                            # given (about 2.3 GB per 512x512 crop of dped_mobile) before merging it
                            extra_options={"CalibMovingAverage": False, "CalibStridedMinMax": 1},
                            **({"calibration_cache_path": str(cache)} if cache is not None else {}))


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
