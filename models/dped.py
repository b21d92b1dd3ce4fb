"""DPED generator (Ignatov et al. 2017) and DPED+ (its depthwise-separable variant), plus the texture discriminator.

Both generators map NCHW float32 sRGB in [0, 1] to the same, for any H x W:

    9x9 conv 3->w, act
    `blocks` x residual block: [3x3 conv, BN, act, 3x3 conv, BN, act] + skip
    3x3 conv w->w, act;  3x3 conv w->w, act
    9x9 conv w->3, output head
    (with ``smooth``) the output blended with its 3x3 mean

With ``global_branch`` (models.globe), a thumbnail of the whole photo sets per-image curves on the input and a shift
(and scale) of the stem's features.

DPED+ replaces the convolutions with depthwise + pointwise pairs (MobileNet). BatchNorm replaces DPED's
InstanceNorm: it folds into the convs at export and keeps tiled inference equal to whole-image inference.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .contract import DeploymentContract
from .globe import THUMBNAIL, GlobalBranch, thumbnail_of, tone_curve
from .layers import ConvBNAct, Smoothing, clip_unit, last_conv, make_activation
from .registry import register_model

HEADS = ("tanh", "residual")
OUT_LAYERS = ("separable", "full", "pointwise_first")


@dataclass
class DPEDConfig:
    width: int = 64                  # channels of every hidden layer (DPED: 64)
    blocks: int = 4                  # residual blocks of two 3x3 convs + BatchNorm (DPED: 4)
    separable: bool = False          # DPED+: depthwise k x k + pointwise 1x1 instead of full convs
    separable_stem: bool = False     # also factorise the 3->w 9x9 stem (MobileNet keeps the stem a full conv:
                                     # a depthwise filter per *input* channel would leave 3 spatial filters)
    activation: str = "leaky_relu"   # paper: LeakyReLU(0.005) after every layer; DPED: relu
    negative_slope: float = 0.005
    head: str = "residual"           # tanh: DPED's tanh(x) * 0.58 + 0.5;
                                     # residual: clamp(input + x, 0, 1), an image-space residual, clipped
    out_layer: str = "separable"     # the last 9x9 layer w->3 of a separable net: 'separable' (depthwise 9x9 on
                                     # w channels, then 1x1), 'full' (one 9x9 conv), 'pointwise_first' (1x1 w->3,
                                     # then depthwise 9x9 on 3 channels); a full-conv net always uses 'full'
    global_branch: bool = False      # image-adaptive: a thumbnail encoder sets per-image curves and feature
                                     # scale/shift (models.globe); False keeps the paper's networks
    thumbnail: int = THUMBNAIL       # thumbnail side for the global branch
    global_film: bool = True         # the branch also scales and shifts the stem's features (False: curves only)
    film_scale: bool = True          # with global_film: scale and shift (False: shift alone, one pass fewer)
    smooth: float = 0.0              # > 0: the output blended with its 3x3 mean by this weight (a convex
                                     # combination: it stays in [0, 1]; models.layers.Smoothing): trades a little
                                     # sharpness for less of the noise the residual head passes through; 0 keeps
                                     # the paper's networks

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"Unknown head {self.head!r}. Supported: {', '.join(HEADS)}")
        if self.out_layer not in OUT_LAYERS:
            raise ValueError(f"Unknown out_layer {self.out_layer!r}. Supported: {', '.join(OUT_LAYERS)}")
        make_activation(self.activation, self.negative_slope)  # validates the name
        if not 0 <= self.smooth <= 1:
            raise ValueError(f"smooth must be in [0, 1] (0: no output smoothing), got {self.smooth}")
        if self.width < 1 or self.blocks < 0:
            raise ValueError(f"width must be >= 1 and blocks >= 0, got width={self.width}, blocks={self.blocks}")


class ResidualBlock(nn.Module):
    def __init__(self, cfg: DPEDConfig):
        super().__init__()
        act = lambda: make_activation(cfg.activation, cfg.negative_slope)  # noqa: E731
        self.body = nn.Sequential(
            ConvBNAct(cfg.width, cfg.width, 3, cfg.separable, bn=True, act=act()),
            ConvBNAct(cfg.width, cfg.width, 3, cfg.separable, bn=True, act=act()),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class PointwiseFirst(nn.Sequential):
    """1x1 conv w -> 3, then a depthwise 9x9 conv on the 3 channels: the 9x9 reach for 3 x 81 multiply-adds per
    pixel instead of w x 81 (a depthwise 9x9 on 64 channels runs at about 1 GMAC/s in XNNPACK)."""

    def __init__(self, cin: int, cout: int, kernel: int):
        super().__init__()
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)
        self.depthwise = nn.Conv2d(cout, cout, kernel, padding=kernel // 2, groups=cout, bias=True)


def _out_layer(width: int, form: str) -> ConvBNAct:
    """The output layer w -> 3 with a 9x9 reach, in the form the config names."""
    layer = ConvBNAct(width, 3, 9, form == "separable", bn=False, act=None)
    if form == "pointwise_first":
        layer.conv = PointwiseFirst(width, 3, 9)
    return layer


class DPEDGenerator(nn.Module):
    def __init__(self, cfg: DPEDConfig):
        super().__init__()
        self.config = cfg
        act = lambda: make_activation(cfg.activation, cfg.negative_slope)  # noqa: E731
        w, sep = cfg.width, cfg.separable
        self.stem = ConvBNAct(3, w, 9, sep and cfg.separable_stem, bn=False, act=act())
        self.blocks = nn.Sequential(*[ResidualBlock(cfg) for _ in range(cfg.blocks)])
        self.tail = nn.Sequential(
            ConvBNAct(w, w, 3, sep, bn=False, act=act()),
            ConvBNAct(w, w, 3, sep, bn=False, act=act()),
        )
        self.out = _out_layer(w, cfg.out_layer if sep else "full")
        self.smooth = Smoothing(cfg.smooth) if cfg.smooth > 0 else nn.Identity()
        # 9x9 stem, two 3x3 per block, two 3x3 in the tail, 9x9 out (and the 3x3 smoothing): each k x k conv widens
        # the field by k-1.
        self.globe = GlobalBranch(w if cfg.global_film else 0, cfg.film_scale) if cfg.global_branch else None
        self.contract = DeploymentContract(receptive_field=1 + 8 + 2 * 2 * cfg.blocks + 2 * 2 + 8
                                           + (2 if cfg.smooth > 0 else 0),
                                           thumbnail=cfg.thumbnail if cfg.global_branch else None,
                                           notes="sRGB photo in, enhanced sRGB photo out")
        if cfg.head == "residual":
            nn.init.zeros_(last_conv(self.out.conv).bias)
            nn.init.normal_(last_conv(self.out.conv).weight, std=1e-3)  # start near identity

    def forward(self, x: torch.Tensor, thumbnail: torch.Tensor | None = None, with_global: bool = False):
        """x: (N, 3, H, W) float32 RGB in [0, 1] -> (N, 3, H, W) enhanced.

        With the global branch, ``thumbnail`` (N, 3, S, S) is that of the whole photo when x is a tile of it;
        None: x is the whole photo and its own thumbnail is taken. ``with_global`` (training): also return the
        input after the branch's curves, alone."""
        curved = None
        if self.globe is not None:
            curves, scale, shift = self.globe(thumbnail if thumbnail is not None
                                              else thumbnail_of(x, self.config.thumbnail))
            x = curved = tone_curve(x, curves)
            f = self.stem(x)
            if scale is not None:
                f = f * (1.0 + scale)
            y = self.out(self.tail(self.blocks(f if shift is None else f + shift)))
        else:
            y = self.out(self.tail(self.blocks(self.stem(x))))
        out = self._head(x, y)
        return (out, curved) if with_global else out

    def equalizable(self) -> list[tuple[nn.Module, nn.Module]]:
        """Layer pairs joined only through a positively homogeneous activation, beyond those inside an
        nn.Sequential (quantize.weights: cross-layer equalization)."""
        return [(self.tail[-1], self.out)]

    def modulated(self) -> list[str]:
        """Modules whose output the global branch scales per photo (the stem's activation, before the feature
        scale; a shift alone does not make it one): how much their values matter depends on the photo, beyond what
        calibration images show (quantize.activations leaves them as they are)."""
        cfg = self.config
        return ["stem.act"] if self.globe is not None and cfg.global_film and cfg.film_scale else []

    def _head(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.config.head == "tanh":
            return self.smooth(torch.tanh(y) * 0.58 + 0.5)
        return self.smooth(clip_unit(x + y))


@register_model
def dped(**overrides) -> DPEDGenerator:
    """DPED: full 3x3/9x9 convolutions (about 0.4 M MACs per pixel at width 64)."""
    return DPEDGenerator(DPEDConfig(**{"separable": False, **overrides}))


MOBILE_OUT_LAYER = "full"  # chosen by measurement: README, "DPED+'s output layer"


@register_model
def dped_mobile(**overrides) -> DPEDGenerator:
    """DPED+: depthwise-separable convolutions (about 6x fewer MACs than DPED at width 64), with a full 9x9 output
    layer (a depthwise 9x9 on 64 channels ran at about 1 GMAC/s in XNNPACK)."""
    # A checkpoint stores its whole config; one written before out_layer existed used the separable output layer.
    legacy = "separable" in overrides and "out_layer" not in overrides
    return DPEDGenerator(DPEDConfig(**{"separable": True, "out_layer": "separable" if legacy else MOBILE_OUT_LAYER,
                                       **overrides}))


@register_model
def dped_mobile_s(**overrides) -> DPEDGenerator:
    """DPED+ at half width (32): about 4x fewer MACs than dped_mobile. Its shipped weights are distilled from the
    shipped dped_mobile (python -m train dped --model dped_mobile_s --teacher dped_mobile): README, "Distillation"."""
    return dped_mobile(**{"width": 32, **overrides})


def model_config(model: nn.Module) -> dict:
    """The config dict a checkpoint stores for ``model`` (empty for models without a dataclass config)."""
    cfg = getattr(model, "config", None)
    return asdict(cfg) if cfg is not None else {}


class TextureDiscriminator(nn.Module):
    """DPED's texture discriminator: grayscale patches -> one logit (real DSLR texture vs enhanced).

    Layout from DPED: 11x11/4 conv 48, 5x5/2 conv 128, 3x3 conv 192, 3x3 conv 192, 3x3/2 conv 128, FC 1024, FC 1;
    LeakyReLU(0.2), BatchNorm after all but the first conv. An adaptive pool before the FC layers lets it take
    any patch size (DPED's 100x100 patches give a 7x7 map already).
    """

    def __init__(self, width: int = 48):
        super().__init__()
        c1, c2, c3 = width, width * 8 // 3, width * 4
        act = lambda: nn.LeakyReLU(0.2)  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 11, stride=4, padding=5), act(),
            nn.Conv2d(c1, c2, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(c2), act(),
            nn.Conv2d(c2, c3, 3, padding=1, bias=False), nn.BatchNorm2d(c3), act(),
            nn.Conv2d(c3, c3, 3, padding=1, bias=False), nn.BatchNorm2d(c3), act(),
            nn.Conv2d(c3, c2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c2), act(),
            nn.AdaptiveAvgPool2d(7),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c2 * 49, 1024), act(), nn.Linear(1024, 1))

    def forward(self, gray: torch.Tensor) -> torch.Tensor:
        """gray: (N, 1, H, W) in [0, 1] -> (N,) logits, positive for 'DSLR'."""
        return self.classifier(self.features(gray)).squeeze(1)
