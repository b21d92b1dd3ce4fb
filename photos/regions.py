"""Regions for MPSE's per-region style loss and equalization: a user's label maps, or regions shared by the photo
and its reference found without a network.

The paper segments both photos with PSPNet (ADE20K) and merges the classes into a few labels (sky, building,
river, road, vehicle). That network and its weights are not part of this toolkit, so there are two sources:

- ``labels``: integer label maps (PNG, one value per class) from any segmenter, for example PSPNet's merged
  classes. The same value must mean the same class in both maps.
- ``joint`` (the default): k-means over the pixels of both photos together, on features that a global exposure or
  colour cast does not move: each photo's own luminance rank (0 darkest .. 1 brightest), its chroma standardised
  per photo, and the height in the frame. Clustering both photos at once gives the regions the same labels in both
  ("the bright top of the frame" is one label in the photo and in the reference). The regions are colour-and-layout
  regions, not semantic classes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.cluster.vq import kmeans2
from skimage import color

SOURCES = ("joint", "none")
FEATURE_WEIGHTS = (1.0, 0.5, 0.5, 1.0)   # luminance rank, a*, b*, height
MAX_SAMPLES = 20_000


def _features(image: np.ndarray) -> np.ndarray:
    """(H*W, 4) features of an RGB float photo: luminance rank, standardised a* and b*, height (0 top, 1 bottom)."""
    h, w, _ = image.shape
    lab = color.rgb2lab(np.clip(image, 0, 1)).reshape(-1, 3)
    rank = np.empty(h * w)
    rank[np.argsort(lab[:, 0], kind="stable")] = np.linspace(0, 1, h * w)
    chroma = (lab[:, 1:] - lab[:, 1:].mean(0)) / (lab[:, 1:].std(0) + 1.0) / 3
    height = np.repeat(np.linspace(0, 1, h), w)
    return np.column_stack([rank, chroma, height]) * np.asarray(FEATURE_WEIGHTS)


def majority_filter(labels: np.ndarray, k: int, size: int = 5) -> np.ndarray:
    """Each pixel takes the most frequent label of its size x size window (removes speckle)."""
    votes = np.stack([ndimage.uniform_filter((labels == r).astype(np.float32), size, mode="nearest")
                      for r in range(k)])
    return votes.argmax(0).astype(np.int32)


def joint_regions(image: np.ndarray, reference: np.ndarray, k: int = 3,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Label maps (int32, values 0..k-1) of both photos from one k-means over both photos' pixels."""
    if k < 1:
        raise ValueError(f"the number of regions must be at least 1, got {k}")
    fa, fb = _features(image), _features(reference)
    both = np.concatenate([fa, fb])
    rng = np.random.default_rng(seed)
    sample = both[rng.choice(len(both), min(MAX_SAMPLES, len(both)), replace=False)]
    centroids, _ = kmeans2(sample, k, minit="++", seed=seed)
    # order the labels top to bottom, so label 0 is the region highest in the frame
    centroids = centroids[np.argsort(centroids[:, 3])]

    def assign(f: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        d = ((f[:, None, :] - centroids[None]) ** 2).sum(-1)
        return majority_filter(d.argmin(1).reshape(shape), k)

    return assign(fa, image.shape[:2]), assign(fb, reference.shape[:2])


def read_labels(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """An integer label map (PNG, mode L/I/P), resized to (H, W) by nearest neighbour."""
    try:
        with Image.open(path) as img:
            if img.mode not in ("L", "I", "I;16", "P"):
                raise ValueError(f"{path}: a label map must be a single-channel integer image (mode L, I or P), "
                                 f"not {img.mode}")
            img = img.resize((shape[1], shape[0]), Image.NEAREST)
            labels = np.asarray(img, dtype=np.int64)
    except OSError as err:
        raise ValueError(f"cannot read label map {path}: {err}") from None
    return labels.astype(np.int32)


def compact(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Renumber the labels of two maps to 0..k-1 over their union; returns both maps and k."""
    values, inverse = np.unique(np.concatenate([a.ravel(), b.ravel()]), return_inverse=True)
    return (inverse[:a.size].reshape(a.shape).astype(np.int32),
            inverse[a.size:].reshape(b.shape).astype(np.int32), len(values))
