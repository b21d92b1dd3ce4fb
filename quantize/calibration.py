"""Calibration sets for post-training quantization: crops at the export size from any image folder.

Default: the built-in training photos (never the held-out ones the fidelity gate and benchmark score on).
Crops are deterministic for a seed; photos smaller than the export size are resized up.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from skimage.transform import resize
from tqdm import tqdm

from photos.io import ImageError, list_images, load_image
from photos.samples import sample_photos

log = logging.getLogger("quantize")


def _crop(img: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    if h < size[0] or w < size[1]:
        scale = max(size[0] / h, size[1] / w)
        img = resize(img, (max(size[0], round(h * scale)), max(size[1], round(w * scale))), order=1,
                     anti_aliasing=False).astype(np.float32)
        h, w = img.shape[:2]
    y, x = int(rng.integers(h - size[0] + 1)), int(rng.integers(w - size[1] + 1))
    return np.ascontiguousarray(img[y:y + size[0], x:x + size[1]], dtype=np.float32)


def calibration_images(folder: str | Path | None, size: tuple[int, int], count: int = 8, seed: int = 0,
                       progress: bool = True) -> list[np.ndarray]:
    """``count`` float32 (H, W, 3) crops of ``size`` from the photos in ``folder`` (cycled if fewer photos)."""
    if folder is None:
        photos = list(sample_photos("train").values())
        sources = [("builtin", p) for p in photos]
    else:
        folder = Path(folder)
        if not folder.is_dir():
            raise ValueError(f"Calibration folder not found: {folder}")
        sources = [(str(p), None) for p in list_images(folder)]
        if not sources:
            raise ValueError(f"No images in calibration folder {folder}")
    rng = np.random.default_rng(seed)
    crops: list[np.ndarray] = []
    bar = tqdm(total=count, desc="calibration", disable=None if progress else True, leave=False)  # None: TTY only
    i, bad = 0, set()
    while len(crops) < count:
        if len(bad) == len(sources):
            raise ValueError(f"No readable images in calibration folder {folder}")
        name, img = sources[i % len(sources)]
        i += 1
        if name in bad:
            continue
        if img is None:
            try:
                img = load_image(name)
            except ImageError as err:
                log.warning("skipping calibration image: %s", err)
                bad.add(name)
                continue
        crops.append(_crop(img, size, rng))
        bar.update(1)
    bar.close()
    return crops


def model_inputs(images: list[np.ndarray], thumbnail_size: int = 0, crop: tuple[slice, slice] | None = None
                 ) -> list[tuple]:
    """Positional NCHW inputs of a PyTorch model for float32 (H, W, 3) images: each image (``crop`` of it, if given)
    and, for an image-adaptive model (``thumbnail_size``), the thumbnail of the whole image."""
    import torch

    from artifacts.thumbnail import thumbnail

    def nchw(img: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].float()

    return [(nchw(img[crop] if crop else img), *((nchw(thumbnail(img, thumbnail_size)),) if thumbnail_size else ()))
            for img in images]
