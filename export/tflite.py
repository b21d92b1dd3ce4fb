"""TFLite through litert-torch (no TensorFlow): NHWC I/O, one named signature, the sidecar embedded.

The artifact has one signature ``enhance`` with input ``image`` (1, H, W, 3) RGB in [0, 1] and output ``enhanced``
of the same shape (the intrinsic decomposer: outputs ``albedo`` and ``shading``); an image-adaptive model also
takes ``thumbnail`` (1, S, S, 3), the whole photo's (artifacts.thumbnail), whose size never changes. Unless
exported with a fixed --size, H and W of the image and the outputs are marked dynamic (-1 in ``shape_signature``),
so that strict resizing (LiteRT's CompiledModel default, ``resize_tensor_input(..., strict=True)``, the Android
app) takes any size; the export's fidelity gate runs the file at a second size to prove it.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from artifacts.cli import check_interrupted
from artifacts.embed import rewrite_tflite
from artifacts.io import THUMBNAIL
from artifacts.thumbnail import thumbnail
from models.contract import thumbnail_size

from artifacts.quiet import quiet as _quiet

from .common import ExportSpec

SIGNATURE, INPUT, OUTPUT = "enhance", "image", "enhanced"
QAT_CROP = 128   # --calibration-method qat fine-tunes on crops of this size cut from the calibration images


class NHWCEnhancer(nn.Module):
    """Channel-last wrapper with named I/O (the contract's output names); litert-torch's layout pass removes the
    permutes."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.names = model.contract.output_names if hasattr(model, "contract") else (OUTPUT,)

    def forward(self, image: torch.Tensor, thumbnail: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        extra = (thumbnail.permute(0, 3, 1, 2),) if thumbnail is not None else ()
        y = self.model(image.permute(0, 3, 1, 2), *extra)
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


def same_pads_as_wider_kernels(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in which every SAME-padded stride-2 downsampling (``models.layers.downsample``: zero
    padding at the bottom and right, then a 3x3 stride-2 conv without padding) is one 4x4 stride-2 conv with
    symmetric padding 1 whose first kernel row and column are zero.

    Both compute w0 x[2i] + w1 x[2i+1] + w2 x[2i+2] on even sizes (every level of the stride-32 encoders), so the
    result is exact. litert-torch fuses a conv's own symmetric padding into a SAME conv, while an explicit pad of a
    tensor that has other consumers (U-Net skips, the input) stays a PAD in NCHW between two TRANSPOSEs.
    """
    from models.layers import SeparableConv2d

    def is_same_downsample(m: nn.Module) -> bool:
        return (isinstance(m, nn.Sequential) and len(m) == 2 and isinstance(m[0], nn.ZeroPad2d)
                and tuple(m[0].padding) == (0, 1, 0, 1))

    if not any(is_same_downsample(m) for m in model.modules()):
        return model
    model = copy.deepcopy(model)
    for seq in [m for m in model.modules() if is_same_downsample(m)]:
        holder = seq[1].conv if isinstance(seq[1].conv, SeparableConv2d) else seq[1]
        attr = "depthwise" if isinstance(holder, SeparableConv2d) else "conv"
        conv = getattr(holder, attr)
        if conv.stride != (2, 2) or conv.kernel_size != (3, 3) or conv.padding != (0, 0):
            continue
        wide = nn.Conv2d(conv.in_channels, conv.out_channels, 4, 2, 1, groups=conv.groups, bias=conv.bias is not None)
        with torch.no_grad():
            wide.weight.copy_(nn.functional.pad(conv.weight, (1, 0, 1, 0)))
            if conv.bias is not None:
                wide.bias.copy_(conv.bias)
        setattr(holder, attr, wide)
        seq[0] = nn.Identity()
    return model


# A depthwise-separable conv is exported as the one dense conv it equals when its kernel is at least this wide and
# it has at most DENSE_MAX_OUT output channels. XNNPACK's depthwise kernels this wide ran at about 1 GMAC/s here
# (mdie's 7x7 on 32 channels: 67 % of the whole file's LiteRT time for 6 % of its MACs; DPED+'s 9x9 on 64 before
# it), while a dense conv with few outputs runs at tens of GMAC/s: more MACs, less time.
DENSE_MIN_KERNEL, DENSE_MAX_OUT = 5, 8


def wide_separables_as_dense(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in which every wide ``SeparableConv2d`` with few outputs (see ``DENSE_MIN_KERNEL``) is
    the dense conv it computes: W[o, i] = pointwise[o, i] x depthwise[i], the pointwise bias kept. Exact up to
    float summation order; nothing to retrain."""
    from models.layers import SeparableConv2d

    def wide(m: nn.Module) -> bool:
        return (isinstance(m, SeparableConv2d) and min(m.depthwise.kernel_size) >= DENSE_MIN_KERNEL
                and m.pointwise.out_channels <= DENSE_MAX_OUT and m.depthwise.stride == (1, 1))

    def dense(sep: SeparableConv2d) -> nn.Conv2d:
        dw, pw = sep.depthwise, sep.pointwise
        conv = nn.Conv2d(dw.in_channels, pw.out_channels, dw.kernel_size, 1, dw.padding, dw.dilation,
                         bias=pw.bias is not None)
        with torch.no_grad():
            conv.weight.copy_(pw.weight[:, :, 0, 0, None, None] * dw.weight[:, 0][None])
            if pw.bias is not None:
                conv.bias.copy_(pw.bias)
        return conv

    return _replaced(model, wide, dense)


def _replaced(model: nn.Module, match: Callable[[nn.Module], bool], build: Callable[[nn.Module], nn.Module]
              ) -> nn.Module:
    """``model`` itself if no submodule matches, else a copy with ``build(m)`` in place of each matching ``m``."""
    names = [name for name, m in model.named_modules() if match(m)]
    if not names:
        return model
    model = copy.deepcopy(model)
    for name in names:
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attr, build(model.get_submodule(name)))
    return model


# A wide conv from many channels to few (DPED's 9x9 output conv, 64 -> 3) is exported as a stride-2 conv that
# computes the four output phases as 4x the channels, then a pixel shuffle (as a transposed conv, above).
# XNNPACK's conv kernels tile output channels by 8 or 16, so 3 outputs use a fifth of each tile: the 9x9 64->3 conv
# ran at 19 % of LiteRT's fp32 peak on an AVX-512 CPU (397 ms of dped_mobile's 863 at 720x1280, in
# python -m benchmark --profile), and its phase form, 1.23x the MACs on 12 outputs, took 132 ms against 390 alone.
PHASE_MIN_KERNEL, PHASE_MAX_OUT, PHASE_MIN_IN = 5, 4, 32


def _phased(m: nn.Module) -> bool:
    return (isinstance(m, nn.Conv2d) and m.groups == 1 and m.stride == (1, 1) and m.dilation == (1, 1)
            and m.padding_mode == "zeros" and m.kernel_size[0] == m.kernel_size[1] >= PHASE_MIN_KERNEL
            and m.kernel_size[0] % 2 == 1 and m.padding == (m.kernel_size[0] // 2,) * 2
            and m.out_channels <= PHASE_MAX_OUT and m.in_channels >= PHASE_MIN_IN)


def few_outputs_as_phases(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in which every wide SAME conv from many channels to few (see ``PHASE_MIN_KERNEL``) is a
    (k+1)x(k+1) stride-2 conv with 4 x C outputs, output phase (dy, dx) of channel c in channel 4c + 2dy + dx with
    the k x k kernel placed at (dy, dx), followed by the pixel shuffle that interleaves the phases. Each output
    pixel is the same sum of the same products, so the result is exact for even H and W (``size_multiple``)."""
    def phased(conv: nn.Conv2d) -> nn.Module:
        k, cout = conv.kernel_size[0], conv.out_channels
        phases = nn.Conv2d(conv.in_channels, 4 * cout, k + 1, stride=2, padding=k // 2, bias=conv.bias is not None)
        with torch.no_grad():
            phases.weight.zero_()
            for dy in range(2):
                for dx in range(2):
                    phases.weight[2 * dy + dx::4, :, dy:dy + k, dx:dx + k] = conv.weight
            if conv.bias is not None:
                phases.bias.copy_(conv.bias.repeat_interleave(4))
        return shuffles_as_transposed_convs(nn.Sequential(phases, nn.PixelShuffle(2)), channels=conv.in_channels)

    return _replaced(model, _phased, phased)


def size_multiple(model: nn.Module) -> int:
    """H and W of the converted graph must be multiples of this: the model's own, and 2 where a conv is phased."""
    import math

    own = model.contract.size_multiple
    return math.lcm(own, 2) if any(_phased(m) for m in model.modules()) else own


def as_converted(model: nn.Module) -> nn.Module:
    """The network the TFLite export converts: ``model`` (BN folded) with the exact rewrites above, NCHW."""
    return few_outputs_as_phases(wide_separables_as_dense(same_pads_as_wider_kernels(
        shuffles_as_transposed_convs(model))))


def _require_litert_torch():
    try:
        with _quiet():
            import litert_torch
    except ImportError as err:
        from .common import MissingBackend
        raise MissingBackend(f"TFLite export needs litert-torch: pip install litert-torch ({err})") from None
    return litert_torch


def keyword_inputs(image: np.ndarray, thumbnail_side: int | None) -> dict[str, torch.Tensor]:
    """The NHWC module's inputs for one float32 (H, W, 3) photo: the image, and its thumbnail if the model takes
    one."""
    return {INPUT: torch.from_numpy(np.array(image, dtype=np.float32))[None],
            **({THUMBNAIL: torch.from_numpy(thumbnail(image, thumbnail_side))[None]} if thumbnail_side else {})}


def choose_float_layers(model: nn.Module, spec: ExportSpec, calibration: list[np.ndarray],
                        inputs: list[tuple[str, np.ndarray]], out: Path,
                        progress: Callable[[str], None] | None = None,
                        reference: list[np.ndarray] | None = None, converted_db: float | None = None
                        ) -> list[list[str]]:
    """--fidelity-target on int8: choices of the layer to float, with what follows it, so that the file reaches
    the target, best first, measured on PT2E's graph run in PyTorch (``quantize.sensitivity_tflite``); the export
    converts them in turn until its gate passes. ``reference``: the (H, W, C) outputs to score against on
    ``inputs`` (the gate's: the unchanged model's), default the converted module's own. ``converted_db``: the gate's
    fidelity of the converted all-int8 file; the simulation's target moves by its offset from that."""
    from quantize.sensitivity_tflite import float_suffix_candidates

    # QAT starts from PTQ's ranges: the search simulates PTQ
    trials = sensitivity_trials(model, calibration, inputs, "histogram" if spec.method == "qat" else spec.method)
    if reference is not None:
        names, channels = zip(*model.contract.outputs)
        trials.use_reference([dict(zip(names, (torch.from_numpy(np.ascontiguousarray(part))[None] for part in
                                               np.split(ref, np.cumsum(channels)[:-1], axis=2)))) for ref in reference])
    return float_suffix_candidates(trials, spec.fidelity_target, progress, converted_db=converted_db)


def sensitivity_trials(model: nn.Module, calibration: list[np.ndarray], inputs: list[tuple[str, np.ndarray]],
                       method: str, source: str = ""):
    """``quantize.sensitivity_tflite.PT2ETrials`` of a BN-folded model as ``convert`` quantizes it (NHWC, keyword
    inputs, the same rewrites), calibrated on ``calibration`` and scored on the named ``inputs``."""
    from quantize import tflite as recipes
    from quantize.sensitivity_tflite import PT2ETrials

    module = recipes.own_input_scale(NHWCEnhancer(as_converted(model)).eval())
    size = thumbnail_size(model)
    with _quiet():
        return PT2ETrials(module, [keyword_inputs(img, size) for img in calibration],
                          [(name, keyword_inputs(img, size)) for name, img in inputs], method, source=source)


def convert(model: nn.Module, spec: ExportSpec, path: Path, calibration: list[np.ndarray] | None = None) -> None:
    """Convert an eval-mode (BN-folded) model traced at ``spec.size`` (H, W) and write it to ``path``.

    fp32: plain conversion. int8: PT2E static quantization calibrated on ``calibration``.
    fp16 / dynamic-int8: the fp32 file compressed by ai-edge-quantizer.
    """
    from quantize import tflite as recipes

    litert_torch = _require_litert_torch()
    module = NHWCEnhancer(as_converted(model)).eval()
    precision, (h, w) = spec.precision, spec.size
    size = thumbnail_size(model)
    sample = {INPUT: torch.rand(1, h, w, 3), **({THUMBNAIL: torch.rand(1, size, size, 3)} if size else {})}
    with _quiet():
        if precision == "int8":
            if not calibration:
                raise ValueError("int8 export needs calibration images")
            calib = [keyword_inputs(img, size) for img in calibration]
            if spec.method == "qat":
                module, config, _ = recipes.pt2e_qat(recipes.own_input_scale(module), sample, calib,
                                                     recipes.qat_crops(calib, QAT_CROP), spec.qat_steps,
                                                     dynamic_hw=(INPUT,), float_layers=spec.float_layers,
                                                     multiple=size_multiple(model))
            else:
                module, config = recipes.pt2e_int8(recipes.own_input_scale(module), sample, calib,
                                                   method=spec.method, float_layers=spec.float_layers)
            check_interrupted()  # torch.export may swallow a Ctrl-C while it traces
            edge = litert_torch.signature(SIGNATURE, module, sample_kwargs=sample).convert(quant_config=config)
        else:
            edge = litert_torch.signature(SIGNATURE, module, sample_kwargs=sample).convert()
        check_interrupted()
        edge.export(str(path))
        if precision in ("fp16", "dynamic-int8"):
            recipes.compress(path, path, precision)
    rewrite_tflite(path, dynamic_hw=not spec.fixed_size)
