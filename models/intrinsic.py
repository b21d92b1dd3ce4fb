"""Intrinsic decomposition F (image -> albedo, shading) and composition F' (albedo, shading -> image).

Both are the paper's symmetric encoder-decoder (section 3.2.1):

    encoder: five 3x3 stride-2 convs ('SAME' padded), w, 2w, 4w, 8w, 16w filters (w = 16: 16 ... 256), BN + ReLU
    decoder: the mirror, each level a 3x3 conv to 4x its filters, BatchNorm + ReLU, then sub-pixel upsampling
             (pixel shuffle x2); each level also sees the encoder features of its size (U-Net skips, through a
             1x1 conv + BN + ReLU)
    head:    3x3 conv over the last decoder features and the network's own input

The skips and the input at the head carry full-resolution detail past the 32x bottleneck: without them an
autoencoder this deep blurs everything and no reconstruction reaches 30 dB.

Outputs are physically parameterised so that the networks start where the image formation model says:
- F predicts shading S = sigmoid(head[:3]) in (0, 1) (three channels: coloured light) and a log-albedo correction
  r = head[3:]; albedo A = clamp(I / S * exp(r), 0, 1). With r = 0, A * S = I exactly, so the decomposition is
  consistent by construction and training decides *where* the shading is, not how to copy the image.
- F' returns clamp(A * S + head, 0, 1): the product plus a learned correction (zero at initialisation).

The trivial split (S = 1, A = I) reconstructs perfectly too; train/intrinsic.py explains how it is avoided.
The ``_mobile`` variants use depthwise-separable convs everywhere except the first (MobileNet's full stem).
Inputs of any H x W are edge-padded to a multiple of 32 and the outputs cropped back; exported graphs take
multiples of 32 (``contract.size_multiple``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .contract import DeploymentContract
from .layers import ConvBNAct, InputSkip, clip_unit, downsample, last_conv
from .registry import register_model

LEVELS = 5
MULTIPLE = 2 ** LEVELS
EXP_MIN, EXP_MAX = math.exp(-4.0), math.exp(4.0)  # the albedo correction's range, exp(r) for r in [-4, 4]


@dataclass
class IntrinsicConfig:
    width: int = 16            # filters of the first encoder level; doubles per level (paper: 16 ... 256)
    separable: bool = False    # depthwise-separable convs (the _mobile variants)

    def __post_init__(self) -> None:
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")

    @property
    def widths(self) -> list[int]:
        return [self.width * 2 ** i for i in range(LEVELS)]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Edge-pad (N, C, H, W) at the bottom/right up to multiples of ``multiple`` (no-op when they already are)."""
    ph, pw = -x.shape[-2] % multiple, -x.shape[-1] % multiple
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


class ChannelHalves(nn.Module):
    """Splits (N, 6, H, W) into its first and last three channels as two fixed one-hot 1x1 convs.

    Equal to slicing, but slices become SLICE ops with the export size baked in (the graph would not resize);
    a 1x1 conv is size-free in every runtime. 18 multiply-adds per pixel.
    """

    def __init__(self):
        super().__init__()
        eye = torch.eye(6)[:, :, None, None]
        self.first, self.last = nn.Conv2d(6, 3, 1, bias=False), nn.Conv2d(6, 3, 1, bias=False)
        with torch.no_grad():
            self.first.weight.copy_(eye[:3])
            self.last.weight.copy_(eye[3:])
        self.requires_grad_(False)  # fixed: never trained (quantizers see ordinary 1x1 convs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.first(x), self.last(x)


def crop_like(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``y`` cropped to ``x``'s H x W; no op at all (none in an exported graph) when the sizes already match."""
    h, w = x.shape[-2:]
    return y[..., :h, :w] if y.shape[-2:] != x.shape[-2:] else y


class Upsample(nn.Sequential):
    """3x3 conv to 4x the output filters, BatchNorm, ReLU, pixel shuffle x2 (sub-pixel upsampling)."""

    def __init__(self, cin: int, cout: int, separable: bool):
        super().__init__()
        self.conv = ConvBNAct(cin, 4 * cout, 3, separable, bn=True, act=nn.ReLU())
        self.shuffle = nn.PixelShuffle(2)


class IntrinsicUNet(nn.Module):
    """The shared encoder-decoder: ``cin`` channels in, ``cout`` raw head channels out, same H x W."""

    def __init__(self, cfg: IntrinsicConfig, cin: int, cout: int):
        super().__init__()
        w = cfg.widths
        self.encoder = nn.ModuleList(
            downsample(cin if i == 0 else w[i - 1], w[i], cfg.separable and i > 0, nn.ReLU()) for i in range(LEVELS))
        # decoder level i upsamples to the size of encoder level i - 1 (level 0: the input size)
        outs = [w[0]] + w[:-1]                      # 16, 16, 32, 64, 128 for w = 16
        self.decoder = nn.ModuleList(
            Upsample(w[i] if i == LEVELS - 1 else outs[i + 1] + w[i], outs[i], cfg.separable)
            for i in reversed(range(LEVELS)))
        # a 1x1 conv on each skip: int8 converters need the encoder feature (also padded for the next stride-2
        # conv) and the concatenated tensor to carry their own quantization scales
        self.skips = nn.ModuleList(ConvBNAct(w[i], w[i], 1, False, bn=True, act=nn.ReLU()) for i in range(LEVELS - 1))
        self.head = ConvBNAct(outs[0] + cin, cout, 3, cfg.separable, bn=False, act=None)
        self.input_skip = InputSkip(cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats, h = [], x
        for enc in self.encoder:
            h = enc(h)
            feats.append(h)
        h = feats.pop()
        for up in self.decoder:
            h = up(h)
            if feats:
                h = torch.cat([h, self.skips[len(feats) - 1](feats.pop())], 1)
        return self.head(torch.cat([h, self.input_skip(x)], 1))


def _receptive_field() -> int:
    """Pixels of input one output pixel depends on, along one axis (3x3 convs, 5 levels, pixel shuffles)."""
    rf = 1 + sum(2 * 2 ** i for i in range(LEVELS))            # encoder: 3x3 at strides 1, 2, ..., 16 in
    rf += sum(2 * 2 ** (i + 1) for i in range(LEVELS))          # decoder convs at strides 32 ... 2
    rf += sum(2 ** i for i in range(LEVELS))                    # pixel-shuffle phase of each level
    return rf + 2                                               # head


class IntrinsicDecomposer(nn.Module):
    """F: (N, 3, H, W) image in [0, 1] -> (albedo, shading), each (N, 3, H, W) in [0, 1]."""

    def __init__(self, cfg: IntrinsicConfig):
        super().__init__()
        self.config = cfg
        self.net = IntrinsicUNet(cfg, 3, 6)
        self.halves = ChannelHalves()
        head = last_conv(self.net.head.conv)
        with torch.no_grad():  # start at a mid-grey light (S = 0.5) and r = 0, i.e. A = 2 I clipped
            head.weight.mul_(1e-2)
            head.bias.zero_()
        self.contract = DeploymentContract(
            outputs=(("albedo", 3), ("shading", 3)), receptive_field=_receptive_field(),
            size_multiple=MULTIPLE, tile_halo=32,
            notes="image = albedo x shading; shading is 3-channel (coloured light)")

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = pad_to_multiple(image, MULTIPLE)
        shading_logit, albedo_correction = self.halves(self.net(x))
        # S = sigmoid(z) and A = I / max(S, 1e-3) * exp(clamp(r, -4, 4)), written as 1 / S = 1 + exp(-z), A = I *
        # min(1 / S, 1e3) * clamp(exp(r), e^-4, e^4) (exp is monotonic): the same values up to float rounding, but
        # an int8 export keeps the whole chain in float after one DEQUANTIZE per half (quantize.tflite.FLOAT_OPS),
        # where XNNPACK takes it. Clamping the int8 sigmoid or the int8 r instead gives an int8 MAXIMUM or MINIMUM,
        # which it does not take.
        shading = torch.sigmoid(shading_logit)
        inverse_shading = 1.0 + torch.exp(-shading_logit)
        gain = torch.exp(albedo_correction).clamp(EXP_MIN, EXP_MAX)
        albedo = clip_unit(x * inverse_shading.clamp(max=1e3) * gain)  # clamp: litert-torch keeps clamp_max NCHW
        return crop_like(albedo, image), crop_like(shading, image)


class IntrinsicComposer(nn.Module):
    """F': (N, 6, H, W) albedo and shading (concatenated) -> (N, 3, H, W) image in [0, 1]."""

    def __init__(self, cfg: IntrinsicConfig):
        super().__init__()
        self.config = cfg
        self.net = IntrinsicUNet(cfg, 6, 3)
        self.halves = ChannelHalves()
        head = last_conv(self.net.head.conv)
        with torch.no_grad():  # start as the image formation model A * S
            head.weight.mul_(1e-2)
            head.bias.zero_()
        self.contract = DeploymentContract(
            input_name="intrinsics", channels=6, receptive_field=_receptive_field(), size_multiple=MULTIPLE,
            tile_halo=32, notes="input: albedo (3) and shading (3) concatenated; output: the image")

    def forward(self, intrinsics: torch.Tensor) -> torch.Tensor:
        x = pad_to_multiple(intrinsics, MULTIPLE)
        albedo, shading = self.halves(x)
        return crop_like(clip_unit(albedo * shading + self.net(x)), intrinsics)


@register_model
def intrinsic_decomposer(**overrides) -> IntrinsicDecomposer:
    """F: image -> albedo, shading (paper's encoder-decoder, full 3x3 convs)."""
    return IntrinsicDecomposer(IntrinsicConfig(**{"separable": False, **overrides}))


@register_model
def intrinsic_decomposer_mobile(**overrides) -> IntrinsicDecomposer:
    """F with depthwise-separable convs."""
    return IntrinsicDecomposer(IntrinsicConfig(**{"separable": True, **overrides}))


@register_model
def intrinsic_composer(**overrides) -> IntrinsicComposer:
    """F': albedo, shading -> image (full 3x3 convs)."""
    return IntrinsicComposer(IntrinsicConfig(**{"separable": False, **overrides}))


@register_model
def intrinsic_composer_mobile(**overrides) -> IntrinsicComposer:
    """F' with depthwise-separable convs."""
    return IntrinsicComposer(IntrinsicConfig(**{"separable": True, **overrides}))
