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
    means in the image's own scale (uint8 input: divided by 255).

    One band of rows per cell row: memory is a band, not the photo (a 12 MP photo is never copied whole)."""
    if image.ndim != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"thumbnail needs an (H, W, C) image, got shape {image.shape}")
    scale = 255.0 if image.dtype == np.uint8 else 1.0
    (y0, y1), (x0, x1) = cells(image.shape[0], size), cells(image.shape[1], size)
    widths = (x1 - x0)[:, None]
    out = np.empty((size, size, image.shape[2]), dtype=np.float32)
    for i in range(size):
        rows = image[y0[i]:y1[i]].sum(axis=0, dtype=np.float64)          # (W, C): the band's column sums
        integral = np.concatenate([np.zeros((1, rows.shape[1])), rows.cumsum(axis=0)])
        out[i] = (integral[x1] - integral[x0]) / (widths * (y1[i] - y0[i]) * scale)
    return out
