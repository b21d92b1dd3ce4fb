"""Building blocks shared by the networks: (separable) convolutions with BatchNorm and activation, BN folding."""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

ACTIVATIONS = ("leaky_relu", "relu")


def make_activation(name: str, negative_slope: float) -> nn.Module:
    if name == "leaky_relu":
        return nn.LeakyReLU(negative_slope)
    if name == "relu":
        return nn.ReLU()
    raise ValueError(f"Unknown activation {name!r}. Supported: {', '.join(ACTIVATIONS)}")


class SeparableConv2d(nn.Sequential):
    """MobileNet-style depthwise k x k conv (one filter per channel) followed by a pointwise 1x1 conv.

    Linear in between (no BN/activation), as in Xception: the pair acts as one factorised conv.
    """

    def __init__(self, cin: int, cout: int, kernel: int, bias: bool = True, stride: int = 1, padding: int | None = None):
        super().__init__()
        padding = kernel // 2 if padding is None else padding
        self.depthwise = nn.Conv2d(cin, cin, kernel, stride, padding=padding, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=bias)


def conv2d(cin: int, cout: int, kernel: int, separable: bool, bias: bool = True, stride: int = 1,
           padding: int | None = None) -> nn.Module:
    """A k x k conv, 'same'-padded unless ``padding`` says otherwise, or its depthwise-separable factorisation."""
    padding = kernel // 2 if padding is None else padding
    if separable:
        return SeparableConv2d(cin, cout, kernel, bias=bias, stride=stride, padding=padding)
    return nn.Conv2d(cin, cout, kernel, stride, padding=padding, bias=bias)


class ConvBNAct(nn.Sequential):
    """conv -> BatchNorm (optional) -> activation (optional). BN is folded into the conv for export."""

    def __init__(self, cin: int, cout: int, kernel: int, separable: bool, bn: bool, act: nn.Module | None,
                 stride: int = 1, padding: int | None = None):
        super().__init__()
        self.conv = conv2d(cin, cout, kernel, separable, bias=not bn, stride=stride, padding=padding)
        self.bn = nn.BatchNorm2d(cout) if bn else nn.Identity()
        self.act = act if act is not None else nn.Identity()


def clip_unit(x: torch.Tensor) -> torch.Tensor:
    """clamp(x, 0, 1), written as relu(x) - relu(x - 1): bit-identical in float32 (x - 1 is exact for x >= 1, and
    x - (x - 1) is then exactly 1), with the same gradient. TFLite converters lower clamp(0, 1) to RELU_0_TO_1,
    which XNNPACK does not take, so LiteRT's CompiledModel would not report the graph as fully accelerated;
    RELU and SUB it takes."""
    return torch.relu(x) - torch.relu(x - 1.0)


class Smoothing(nn.Module):
    """(1 - weight) x + weight x mean of the 3x3 neighbourhood, per channel: a fixed low-pass with no learned
    weights. At the photo's border the mean is over the neighbours inside it (``count_include_pad=False``), so a
    flat field stays flat and a tile's border agrees with the whole photo's.

    A 3x3 mean rather than a Gaussian because runtimes have it as one op that excludes the border: TFLite's
    AVERAGE_POOL_2D with SAME padding. A Gaussian needs a zero-padded depthwise conv on 3 channels (XNNPACK's
    slowest kind) plus its own border weights, about twice the time at 720p (README, "Output smoothing"). Int8
    TFLite files keep it in float (quantize.tflite.FLOAT_MODULES): it follows the output clip, which is float there
    already, and XNNPACK has no int8 AVERAGE_POOL_2D. Int8 ONNX files quantize it with the rest."""

    def __init__(self, weight: float):
        super().__init__()
        if not 0 < weight <= 1:
            raise ValueError(f"smoothing weight must be in (0, 1], got {weight}")
        self.weight = weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        return (1.0 - self.weight) * x + self.weight * mean


class InputSkip(nn.Identity):
    """The identity through which a model's input joins a concatenation. An int8 export replaces it with an
    identity 1x1 conv (quantize.tflite.own_input_scale), so that the input keeps a quantization scale of its own
    instead of sharing the concatenation's. No weights: checkpoints are unaffected."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels


def downsample(cin: int, cout: int, separable: bool, act: nn.Module | None) -> nn.Sequential:
    """3x3 stride-2 conv + BatchNorm (+ activation) that halves an even size, padded as TensorFlow's 'SAME'
    (one zero row and column at the bottom and right). PyTorch's symmetric padding would make converters emit a
    separate PAD before the conv, whose int8 scale then conflicts with the tensor's other consumers."""
    return nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)),
                         ConvBNAct(cin, cout, 3, separable, bn=True, act=act, stride=2, padding=0))


def last_conv(conv: nn.Module) -> nn.Conv2d:
    """The Conv2d that produces a factorised conv's output: the pointwise one of a SeparableConv2d, the last of
    any other sequence of convs."""
    return list(conv.children())[-1] if isinstance(conv, nn.Sequential) else conv


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Return an eval-mode copy of ``model`` with every BatchNorm folded into the conv before it.

    The copy computes the same function (up to float rounding) with fewer ops; exporters use it.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if isinstance(module, ConvBNAct) and isinstance(module.bn, nn.BatchNorm2d):
            fused = fuse_conv_bn_eval(last_conv(module.conv), module.bn)
            if isinstance(module.conv, SeparableConv2d):
                module.conv.pointwise = fused
            else:
                module.conv = fused
            module.bn = nn.Identity()
    return folded


@torch.no_grad()
def conv_macs_per_pixel(model: nn.Module, size: int = 64) -> int:
    """Multiply-accumulates per input pixel of all convolutions, counted on a ``size`` x ``size`` input; the
    fixed cost per photo of a global branch (modules marked ``per_photo``, models.globe) is not per pixel and is
    left out."""
    total = 0
    fixed = {id(c) for m in model.modules() if getattr(m, "per_photo", False) for c in m.modules()}

    def hook(mod: nn.Module, _inp, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, Smoothing):  # a 3x3 mean and a blend: about 10 multiply-adds per value
            total += out.shape[2] * out.shape[3] * out.shape[1] * 10
            return
        kh, kw = mod.kernel_size
        total += out.shape[2] * out.shape[3] * mod.out_channels * (mod.in_channels // mod.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, Smoothing)) and id(m) not in fixed]
    try:
        channels = getattr(getattr(model, "contract", None), "channels", 3)
        model.eval()(torch.zeros(1, channels, size, size))
    finally:
        for h in handles:
            h.remove()
    return round(total / (size * size))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
