"""An image-adaptive global branch: a small encoder of a thumbnail of the whole photo whose output conditions a
fully convolutional enhancer (per-image tone and colour curves on its input, scale and shift of its features).

The thumbnail is computed once per photo (``artifacts.thumbnail``: cell means on a fixed grid), so every tile of a
photo sees the same vector and tiled output stays equal to whole-image output. An exported enhancer with the
branch takes two inputs: the image (or tile) and the thumbnail.

Curves per channel c, from the vector (identity at initialisation):
    x1 = clamp(g_c x + b_c, 0, 1)              exposure, white balance, black level (what "levels" does)
                                               (g = 1 + t (2.14 + 1.36 t), t = tanh: 0.16x .. 4.5x)
    x2 = x1 + a_c x1 (1 - x1), twice           a tone curve through 0 and 1 (Zero-DCE's quadratic, |a| <= 1)
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


THUMBNAIL = 128          # thumbnail side, pixels
CURVE_PARAMS = 12        # gain, offset and two quadratic coefficients per channel
ENCODER = (16, 32, 64, 64)


def thumbnail_of(x: torch.Tensor, size: int = THUMBNAIL) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, size, size): the same cells as ``artifacts.thumbnail.thumbnail``."""
    return F.adaptive_avg_pool2d(x, size)


class GlobalBranch(nn.Module):
    """thumbnail (N, 3, S, S) -> (curve parameters (N, 12), feature scale (N, C, 1, 1), feature shift (same));
    with ``film_channels`` 0, curves only (scale and shift None); with ``film_scale`` False, a shift alone (scale
    None): one pass over the features instead of two.

    About 13.5 M multiply-adds per photo at S = 128, whatever the photo's size (15 per pixel at 720p)."""

    per_photo = True  # a fixed cost per photo, not per pixel (models.layers.conv_macs_per_pixel)

    def __init__(self, film_channels: int, film_scale: bool = True):
        super().__init__()
        layers, cin = [], 3
        for cout in ENCODER:  # four stride-2 3x3 convs: 128 -> 8
            layers += [nn.Conv2d(cin, cout, 3, 2, 1), nn.LeakyReLU(0.2)]
            cin = cout
        self.encoder = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(2 * cin, 64), nn.LeakyReLU(0.2),
                                nn.Linear(64, CURVE_PARAMS + (2 if film_scale else 1) * film_channels))
        nn.init.zeros_(self.fc[-1].weight)  # start as the identity: gain 1, offset 0, straight curves, no FiLM
        nn.init.zeros_(self.fc[-1].bias)
        self.film_channels, self.film_scale = film_channels, film_scale

    def forward(self, thumb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        f = self.encoder(thumb)
        # mean and max over the whole map: MEAN and MAX_POOL_2D, which XNNPACK runs in int8 (REDUCE_MAX and an
        # int8 AVERAGE_POOL_2D it does not)
        pooled = torch.cat([f.mean(dim=(2, 3)), F.max_pool2d(f, f.shape[-2:]).flatten(1)], dim=1)
        v = self.fc(pooled)
        c = self.film_channels
        if not c:  # curves only
            return v, None, None
        if not self.film_scale:
            return v[:, :CURVE_PARAMS], None, v[:, CURVE_PARAMS:].reshape(-1, c, 1, 1)
        film = v[:, CURVE_PARAMS:].reshape(-1, 2 * c, 1, 1)
        return v[:, :CURVE_PARAMS], film[:, :c], film[:, c:]


def tone_curve(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Apply the per-image, per-channel curves (see the module doc) to x (N, 3, H, W) in [0, 1].

    Written for int8 XNNPACK, equal to the module doc's form within float rounding (2e-7): the clip as
    relu6(6 z) (an ADD with a fused RELU6; clip_unit's SUBs XNNPACK refuses in int8, which left this part of the
    image path in float), its 1/6 folded into the first quadratic, and each quadratic y (1 + a - a y) as a MUL and
    an ADD by per-photo constants and one MUL, so that no SUB runs over the image. Measured on the shipped
    dped_mobile: the same LiteRT time, and 44.9 dB at the int8 TFLite gate against 41.6 (README, "Shift only")."""
    p = [params[:, 3 * k:3 * k + 3].reshape(-1, 3, 1, 1) for k in range(4)]  # 4-D only: XNNPACK's limit for SLICE
    t = torch.tanh(p[0])
    gain = 1.0 + t * (2.14 + 1.36 * t)  # 0.16x .. 4.5x (-2.6 .. +2.2 EV); no EXP, which int8 XNNPACK lacks
    offset = 0.25 * torch.tanh(p[1])
    w = F.relu6(x * (6.0 * gain) + 6.0 * offset)        # 6 clamp(g x + b, 0, 1)
    a1, a2 = torch.tanh(p[2]), torch.tanh(p[3])
    # y1 = y + a1 y (1 - y) with y = w / 6, then y2 = y1 + a2 y1 (1 - y1), as u = y1 / 2 (exact powers of two): the
    # per-photo constants are made by MUL and ADD only, each ending in a MUL, which keeps them int8 (a NEG, a DIV
    # or a trailing scalar ADD would leave them, and the op on the image that takes them, in float)
    u = w * (w * (a1 * (-1.0 / 72.0)) + (a1 + 1.0) * (1.0 / 12.0))
    return u * (u * (a2 * -4.0) + (a2 + 1.0) * 2.0)
