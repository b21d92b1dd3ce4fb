"""The paper's optional post-processing after the network: histogram equalization and gamma 1/2.2.

Histogram equalization works on the HSV value channel so hues are kept; with a label map it equalizes each
region on its own histogram (the paper's per-semantic-region HE). Gamma 1/2.2 brightens mid-tones the way the
eye's response does. Both take and return float (H, W, 3) RGB in [0, 1].
"""
from __future__ import annotations

import numpy as np
from skimage import color, exposure

STEPS = ("he", "gamma")


def equalize_histogram(image: np.ndarray, labels: np.ndarray | None = None, nbins: int = 256) -> np.ndarray:
    """Equalize the value (brightness) channel globally, or per region of an integer (H, W) label map."""
    hsv = color.rgb2hsv(image)
    v = hsv[..., 2]
    if labels is None:
        hsv[..., 2] = exposure.equalize_hist(v, nbins=nbins)
    else:
        if labels.shape != v.shape:
            raise ValueError(f"label map shape {labels.shape} does not match the image {v.shape}")
        out = v.copy()
        for region in np.unique(labels):
            mask = labels == region
            out[mask] = exposure.equalize_hist(v, nbins=nbins, mask=mask)[mask]
        hsv[..., 2] = out
    return np.clip(color.hsv2rgb(hsv), 0, 1).astype(np.float32)


def gamma_correct(image: np.ndarray, gamma: float = 1 / 2.2) -> np.ndarray:
    """out = in ** gamma (gamma < 1 brightens dark tones)."""
    return exposure.adjust_gamma(np.clip(image, 0, 1), gamma).astype(np.float32)


def postprocess(image: np.ndarray, steps: list[str] | tuple[str, ...], labels: np.ndarray | None = None) -> np.ndarray:
    """Apply steps in order, e.g. ('he', 'gamma')."""
    for step in steps:
        if step == "he":
            image = equalize_histogram(image, labels)
        elif step == "gamma":
            image = gamma_correct(image)
        else:
            raise ValueError(f"Unknown post-processing step {step!r}. Supported: {', '.join(STEPS)}")
    return image
