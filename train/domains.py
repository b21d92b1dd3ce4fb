"""The three partial-enhancement datasets of MDIE (paper 3.2.3): colour, noise and texture.

Each is a set of (low quality, high quality) pairs that differ in one attribute only:

| dataset | folder layout (matching file names)      | built-in low-quality side from a sample photo        |
|---------|------------------------------------------|------------------------------------------------------|
| colour  | ``original/`` + ``retouched/`` (FiveK-like) | flat tone, colour cast, gamma shift, desaturated     |
| noise   | ``noisy/`` + ``clean/`` (DND/SIDD-like)     | Poisson-Gaussian sensor noise in linear light        |
| texture | ``degraded/`` + ``dslr/``                   | optics blur and down-up resampling (lost detail)     |

Built-in pairs use the sample photos as the high-quality side: training photos for training, the held-out photos
for validation, four independent low-quality draws per training photo.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
from skimage.filters import gaussian
from skimage.transform import resize

from photos.samples import SPLITS, sample_photo
from models import DOMAINS

from .data import MemoryPairs, PairSet, folder_pairs

LAYOUTS = {"color": ("original", "retouched"), "noise": ("noisy", "clean"), "texture": ("degraded", "dslr")}


def color_low(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = np.clip(photo, 0, 1) ** rng.uniform(0.8, 1.3)
    x = np.clip(x * (1 + rng.uniform(-0.12, 0.12, size=3)), 0, 1)
    x = x.mean() + (x - x.mean()) * rng.uniform(0.6, 0.85)
    gray = x.mean(axis=2, keepdims=True)
    return np.clip(gray + (x - gray) * rng.uniform(0.4, 0.75), 0, 1).astype(np.float32)


def noise_low(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    linear = np.clip(photo, 0, 1) ** 2.2
    var = rng.uniform(0.005, 0.02) * linear + rng.uniform(1e-4, 5e-4)
    noisy = np.clip(linear + rng.standard_normal(linear.shape) * np.sqrt(var), 0, 1)
    return (noisy ** (1 / 2.2)).astype(np.float32)


def texture_low(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = photo.shape[:2]
    x = gaussian(photo, sigma=rng.uniform(0.8, 1.5), channel_axis=-1, preserve_range=True)
    f = rng.uniform(1.5, 2.5)
    small = resize(x, (max(1, round(h / f)), max(1, round(w / f))), order=1, anti_aliasing=False)
    return np.clip(resize(small, (h, w), order=3, anti_aliasing=False), 0, 1).astype(np.float32)


LOW_QUALITY: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "color": color_low, "noise": noise_low, "texture": texture_low}


@lru_cache(maxsize=8)
def builtin_domain_pairs(domain: str, split: str = "train", variants: int = 4, seed: int = 0) -> MemoryPairs:
    if domain not in DOMAINS:
        raise ValueError(f"Unknown domain {domain!r}. Known: {', '.join(DOMAINS)}")
    variants = 1 if split == "val" else variants
    names, low, high = [], [], []
    for p, name in enumerate(SPLITS[split]):
        photo = sample_photo(name)
        for v in range(variants):
            rng = np.random.default_rng([seed, DOMAINS.index(domain), 1 if split == "val" else 0, p, v])
            names.append(f"{name}#{v}")
            low.append(LOW_QUALITY[domain](photo, rng))
            low[-1].setflags(write=False)
            high.append(np.asarray(photo))
    return MemoryPairs(names, low, high)


def domain_pairs(domain: str, folder: str | Path | None, split: str, seed: int = 0) -> PairSet:
    """(low, high) pairs of one dataset: built-in when ``folder`` is None, else its layout in LAYOUTS."""
    if folder is None:
        return builtin_domain_pairs(domain, split, seed=seed)
    low, high = LAYOUTS[domain]
    return folder_pairs(folder, split, low=low, high=high)
