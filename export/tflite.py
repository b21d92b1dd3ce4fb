"""TFLite through litert-torch (no TensorFlow): NHWC I/O, one named signature, the sidecar embedded.

The artifact has one signature ``enhance`` with input ``image`` (1, H, W, 3) RGB in [0, 1] and output ``enhanced``
of the same shape (the intrinsic decomposer: outputs ``albedo`` and ``shading``). Unless exported with a fixed
--size, H and W are marked dynamic (-1 in ``shape_signature``) on the inputs and outputs, so that strict resizing
(LiteRT's CompiledModel default, ``resize_tensor_input(..., strict=True)``, the Android app) takes any size; the
export's fidelity gate runs the file at a second size to prove it.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from artifacts.embed import rewrite_tflite

from .common import ExportSpec, quiet as _quiet

SIGNATURE, INPUT, OUTPUT = "enhance", "image", "enhanced"


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


def convert(model: nn.Module, spec: ExportSpec, path: Path, calibration: list[np.ndarray] | None = None) -> None:
    """Convert an eval-mode (BN-folded) model traced at ``spec.size`` (H, W) and write it to ``path``.

    fp32: plain conversion. int8: PT2E static quantization calibrated on ``calibration``.
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
            module, config = recipes.pt2e_int8(recipes.own_input_scale(module), sample, calib)
            edge = litert_torch.signature(SIGNATURE, module, sample_kwargs=sample).convert(quant_config=config)
        else:
            edge = litert_torch.signature(SIGNATURE, module, sample_kwargs=sample).convert()
        edge.export(str(path))
        if precision in ("fp16", "dynamic-int8"):
            recipes.compress(path, path, precision)
    rewrite_tflite(path, dynamic_hw=not spec.fixed_size)
