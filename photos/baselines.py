"""Classical one-click corrections a user would try before a network: the baselines every evaluation reports.

- ``levels``: per-channel percentile stretch (1st and 99th percentiles to 0 and 1), the "auto levels" of photo
  editors; it fixes exposure, contrast and colour cast at once when the cast is a per-channel gain.
- ``gray_world``: gray-world white balance (every channel scaled to the mean of the channel means), then a
  luminance-preserving levels stretch shared by the three channels.
- ``clahe``: scikit-image's contrast-limited adaptive histogram equalization on the lightness, colour kept.

All take and return float32 (H, W, 3) RGB in [0, 1]; none looks at anything but the photo itself.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from skimage import exposure


def levels(image: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Per-channel stretch of the ``low``-th .. ``high``-th percentiles to 0 .. 1."""
    lo, hi = np.percentile(image.reshape(-1, 3), [low, high], axis=0)
    return np.clip((image - lo) / np.maximum(hi - lo, 1e-6), 0, 1).astype(np.float32)


def gray_world(image: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Gray-world white balance, then one stretch of all channels together (keeps the balanced hues)."""
    means = image.reshape(-1, 3).mean(axis=0)
    balanced = image * (means.mean() / np.maximum(means, 1e-6))
    lo, hi = np.percentile(balanced, [low, high])
    return np.clip((balanced - lo) / max(float(hi - lo), 1e-6), 0, 1).astype(np.float32)


def clahe(image: np.ndarray, clip_limit: float = 0.01) -> np.ndarray:
    """Contrast-limited adaptive histogram equalization of the lightness (scikit-image), colour kept."""
    from skimage import color

    lab = color.rgb2lab(np.clip(image, 0, 1))
    lab[..., 0] = exposure.equalize_adapthist(lab[..., 0] / 100.0, clip_limit=clip_limit) * 100.0
    return np.clip(color.lab2rgb(lab), 0, 1).astype(np.float32)


BASELINES: dict[str, Callable[[np.ndarray], np.ndarray]] = {"levels": levels, "gray_world": gray_world,
                                                              "clahe": clahe}
