"""MDIE: the multi-domain enhancer G(x, c) on intrinsics, its discriminator, and the whole pipeline F -> G -> F'.

Label vector (paper 3.2.2, StarGAN's mask vector): c = [c_1 .. c_n, m_1 .. m_n] over n = 3 datasets
(colour, noise, texture). c_i = 1 asks for the high-quality value of dataset i's attribute, 0 for low quality;
m is the one-hot mask naming the dataset whose label is known (labels of the others are 0 and ignored).
The deployed pipeline names every label 'high quality': c = [1, 1, 1, 1, 1, 1].

StarGAN tiles c over the image and concatenates it to the input; here c goes through a linear layer and is added
to the features after the stem and at the bottleneck. For a constant label that is the same conditioning without
the border effect of zero-padded label planes, and the exported graph stays resizable (one broadcast add).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .contract import DeploymentContract
from .intrinsic import (IntrinsicComposer, IntrinsicConfig, IntrinsicDecomposer, MULTIPLE, crop_like,
                        pad_to_multiple)
from .layers import ConvBNAct, clip_unit, downsample, last_conv
from .registry import register_model

DOMAINS = ("color", "noise", "texture")
ALL_HIGH = (1.0,) * (2 * len(DOMAINS))


def domain_label(domain: str | None, high: bool | float = True) -> torch.Tensor:
    """Label vector of one dataset (``domain``) at low (0) or high (1) quality; None: all high, all known."""
    if domain is None:
        return torch.tensor(ALL_HIGH)
    i = DOMAINS.index(domain)
    c = torch.zeros(2 * len(DOMAINS))
    c[i], c[len(DOMAINS) + i] = float(high), 1.0
    return c


@dataclass
class MDIEGeneratorConfig:
    width: int = 32            # stem filters; 2x and 4x after the two stride-2 convs
    blocks: int = 3            # residual blocks at 1/4 resolution
    separable: bool = True     # depthwise-separable convs after the stem (mobile)

    def __post_init__(self) -> None:
        if self.width < 1 or self.blocks < 0:
            raise ValueError(f"width must be >= 1 and blocks >= 0, got width={self.width}, blocks={self.blocks}")


class _Residual(nn.Module):
    def __init__(self, c: int, separable: bool):
        super().__init__()
        self.body = nn.Sequential(ConvBNAct(c, c, 3, separable, bn=True, act=nn.ReLU()),
                                  ConvBNAct(c, c, 3, separable, bn=True, act=None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class MDIEGenerator(nn.Module):
    """G: (N, 6, H, W) albedo + shading and (N, 6) or (6,) label -> (N, 6, H, W) enhanced albedo + shading.

    7x7 stem (+ label), two stride-2 convs (+ label), residual blocks at 1/4 resolution, two pixel-shuffle
    upsamplings, the stem's full-resolution features added back, 7x7 output as a residual on the input.
    """

    def __init__(self, cfg: MDIEGeneratorConfig):
        super().__init__()
        self.config = cfg
        w, sep, n_label = cfg.width, cfg.separable, 2 * len(DOMAINS)
        self.stem = ConvBNAct(6, w, 7, False, bn=True, act=None)
        self.label_stem = nn.Linear(n_label, w)
        self.down = nn.Sequential(downsample(w, 2 * w, sep, nn.ReLU()), downsample(2 * w, 4 * w, sep, None))
        self.label_mid = nn.Linear(n_label, 4 * w)
        self.blocks = nn.Sequential(*[_Residual(4 * w, sep) for _ in range(cfg.blocks)])
        self.up = nn.Sequential(ConvBNAct(4 * w, 8 * w, 3, sep, bn=True, act=nn.ReLU()), nn.PixelShuffle(2),
                                ConvBNAct(2 * w, 4 * w, 3, sep, bn=True, act=nn.ReLU()), nn.PixelShuffle(2))
        self.out = ConvBNAct(w, 6, 7, sep, bn=False, act=None)
        nn.init.zeros_(last_conv(self.out.conv).bias)
        nn.init.normal_(last_conv(self.out.conv).weight, std=1e-3)  # start near identity
        self.register_buffer("default_label", torch.tensor(ALL_HIGH), persistent=False)
        # 7x7 stem, 3x3 at strides 1 and 2, two 3x3 per block at stride 4, up convs at strides 4 and 2 with
        # their pixel-shuffle phases, 7x7 out
        rf = 1 + 6 + 2 + 4 + 16 * cfg.blocks + 8 + 2 + 4 + 1 + 6
        self.contract = DeploymentContract(input_name="intrinsics", channels=6,
                                           outputs=(("intrinsics", 6),), receptive_field=rf, size_multiple=4,
                                           notes="albedo + shading in and out; label fixed to all high quality")

    def forward(self, x: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        c = self.default_label if label is None else label
        c = c.expand(x.shape[0], -1) if c.dim() == 1 else c
        xp = pad_to_multiple(x, 4)
        full = torch.relu(self.stem(xp) + self.label_stem(c)[:, :, None, None])
        f = torch.relu(self.down(full) + self.label_mid(c)[:, :, None, None])
        # the full-resolution stem features join the upsampled ones: denoising and sharpening act per pixel,
        # which a 1/4-resolution bottleneck alone cannot express
        y = self.out(self.up(self.blocks(f)) + full)
        return crop_like(clip_unit(xp + y), x)


class MDIEDiscriminator(nn.Module):
    """D: (N, 6, H, W) intrinsics -> (source logits (N, 1, h, w) PatchGAN map, domain logits (N, 3)).

    StarGAN's layout at smaller width: 4x4 stride-2 convs with LeakyReLU(0.01), a 3x3 source head, and an
    auxiliary classifier (one logit per dataset: 'is this image high quality for that attribute?').
    """

    def __init__(self, width: int = 32, layers: int = 4):
        super().__init__()
        convs, c = [], 6
        for i in range(layers):
            convs += [nn.Conv2d(c, width * 2 ** i, 4, 2, 1), nn.LeakyReLU(0.01)]
            c = width * 2 ** i
        self.features = nn.Sequential(*convs)
        self.src = nn.Conv2d(c, 1, 3, padding=1, bias=False)
        self.cls = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, len(DOMAINS)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.src(h), self.cls(h)


@register_model
def mdie_generator(**overrides) -> MDIEGenerator:
    """G(x, c): the multi-domain enhancer on albedo + shading (default label: all high quality)."""
    return MDIEGenerator(MDIEGeneratorConfig(**overrides))


@dataclass
class MDIEConfig:
    width: int = 16                # decomposer / composer first-level filters
    separable: bool = True         # mobile decomposer and composer
    generator_width: int = 32
    blocks: int = 3                # generator residual blocks


class MDIE(nn.Module):
    """The deployed pipeline: image -> F -> G(., all high quality) -> F' -> enhanced image."""

    def __init__(self, cfg: MDIEConfig):
        super().__init__()
        self.config = cfg
        icfg = IntrinsicConfig(cfg.width, cfg.separable)
        self.decomposer = IntrinsicDecomposer(icfg)
        self.generator = MDIEGenerator(MDIEGeneratorConfig(cfg.generator_width, cfg.blocks, True))
        self.composer = IntrinsicComposer(icfg)
        rf = self.decomposer.contract.receptive_field + self.generator.contract.receptive_field \
            + self.composer.contract.receptive_field - 2
        self.contract = DeploymentContract(receptive_field=rf, size_multiple=MULTIPLE, tile_halo=64,
                                           notes="decompose, enhance with every label 'high quality', compose")

    def enhance_intrinsics(self, image: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        return self.generator(torch.cat(self.decomposer(image), 1), label)

    def forward(self, image: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, H, W) in [0, 1]; ``label`` overrides 'all high quality'."""
        return self.composer(self.enhance_intrinsics(image, label))


@register_model
def mdie(**overrides) -> MDIE:
    """MDIE: mobile decomposer, multi-domain generator with all labels 'high quality', mobile composer."""
    return MDIE(MDIEConfig(**overrides))
