"""The thumbnail an image-adaptive model sees of the whole photo: a fixed size x size grid of cell means.

Cell (i, j) averages rows floor(i H / size) .. ceil((i + 1) H / size) - 1 and the same columns of W: exactly
PyTorch's ``adaptive_avg_pool2d``, so the thumbnail a model computes for itself in training equals the one an app
computes once per photo and passes to every tile (android_demo's core does the same arithmetic). Imports no
PyTorch: runtimes and apps call it.
"""
from __future__ import annotations

import numpy as np


METHOD = ("cell means on a {size}x{size} grid: cell (i, j) averages rows floor(i*H/{size}) to "
          "ceil((i+1)*H/{size})-1 and columns likewise (PyTorch's adaptive_avg_pool2d), RGB in [0, 1], of the "
          "whole photo; every tile of the photo takes the same thumbnail")


def cells(length: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) of the ``size`` cells along an axis of ``length`` pixels (end exclusive)."""
    i = np.arange(size, dtype=np.int64)
    return (i * length) // size, -((-(i + 1) * length) // size)


def thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, C) image (uint8 or float, values in [0, 255] or [0, 1] as given) -> float32 (size, size, C) of cell
    means in the image's own scale (uint8 input: divided by 255)."""
    if image.ndim != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"thumbnail needs an (H, W, C) image, got shape {image.shape}")
    x = image.astype(np.float64) / (255.0 if image.dtype == np.uint8 else 1.0)
    integral = np.zeros((x.shape[0] + 1, x.shape[1] + 1, x.shape[2]))
    integral[1:, 1:] = x.cumsum(0).cumsum(1)
    (y0, y1), (x0, x1) = cells(x.shape[0], size), cells(x.shape[1], size)
    sums = (integral[y1][:, x1] - integral[y0][:, x1] - integral[y1][:, x0] + integral[y0][:, x0])
    area = ((y1 - y0)[:, None] * (x1 - x0)[None, :])[..., None]
    return (sums / area).astype(np.float32)
