"""Intrinsic-image data: (image, albedo, shading) triples with image = albedo x shading.

- Built-in: the sample photos and scikit-image's textures (brick, grass, gravel, tinted) serve as albedo; each
  sample gets its own smooth random shading field under a coloured light, so exact ground truth exists.
  Shading = light colour x (ambient + directional gradient + soft light/shadow blobs + low-frequency noise,
  sometimes a soft cast-shadow edge), scaled into [s_min, 1]. Training albedos come from the training photos,
  held-out ones from the validation photos.
- Folder (MPI-Sintel style): ``<root>/{clean|image|final}``, ``<root>/albedo`` and ``<root>/shading`` holding
  files with the same relative paths (sub-folders such as Sintel's scenes are fine).
- Unlabeled photos for the self-supervised phase: the built-in training photos, or any image folder.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter, zoom

from photos.io import ImageError, load_image
from photos.samples import SPLITS, sample_photo

from .data import DatasetError

log = logging.getLogger("train")
TEXTURES = ("brick", "grass", "gravel")
IMAGE_DIRS = ("clean", "image", "final")
SHADING_SCALE = 192.0  # pixels: the unit length of the shading fields' features (blob radii 0.1-0.5 of it)


@lru_cache(maxsize=None)
def _texture(name: str) -> np.ndarray:
    from skimage import data

    img = np.asarray(getattr(data, name)(), dtype=np.float32) / 255.0
    img.setflags(write=False)
    return img


def albedo_sources(split: str) -> list[np.ndarray]:
    """Albedo images of a split: its photos, and (training only) the three textures as grayscale."""
    photos = [sample_photo(n) for n in SPLITS[split]]
    return photos + ([_texture(n) for n in TEXTURES] if split == "train" else [])


def shading_field(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth random (h, w, 3) shading in (0, 1]: coloured light on a smooth scalar field."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy, xx = yy / SHADING_SCALE, xx / SHADING_SCALE  # pixel scale fixed: patches and photos see the same light
    angle = rng.uniform(0, 2 * np.pi)
    f = rng.uniform(0.3, 1.0) * (np.cos(angle) * xx + np.sin(angle) * yy)            # directional gradient
    for _ in range(int(rng.integers(1, 4))):                                         # light spots and shadows
        cy, cx = rng.uniform(-0.2, 1.2) * h / SHADING_SCALE, rng.uniform(-0.2, 1.2) * w / SHADING_SCALE
        r = rng.uniform(0.1, 0.5)
        f += rng.uniform(-1.0, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    gh, gw = max(2, round(6 * h / SHADING_SCALE)), max(2, round(6 * w / SHADING_SCALE))
    coarse = rng.standard_normal((gh, gw)).astype(np.float32)                        # low-frequency noise
    f += 0.3 * zoom(coarse, (h / gh, w / gw), order=3)[:h, :w]
    if rng.random() < 0.5:                                                           # soft cast-shadow edge
        a2, oy, ox = rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
        d = np.cos(a2) * (xx - ox / SHADING_SCALE) + np.sin(a2) * (yy - oy / SHADING_SCALE)
        f -= rng.uniform(0.3, 0.8) / (1 + np.exp(-d / rng.uniform(0.005, 0.03)))
    f = gaussian_filter(f, sigma=1.0)
    s_min = rng.uniform(0.15, 0.45)
    f = s_min + (1 - s_min) * (f - f.min()) / max(float(f.max() - f.min()), 1e-6)
    light = rng.uniform(0.65, 1.0, size=3).astype(np.float32)
    light /= light.max()                                                             # coloured light, max 1
    return (f[..., None] * light).astype(np.float32)


def _albedo_crop(src: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w = src.shape[:2]
    if h < size or w < size:
        src = np.pad(src, ((0, max(0, size - h)), (0, max(0, size - w))) + ((0, 0),) * (src.ndim - 2),
                     mode="reflect")
        h, w = src.shape[:2]
    y, x = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
    crop = src[y:y + size, x:x + size]
    if crop.ndim == 2:  # a grayscale texture: tinted into a coloured material
        tint = rng.uniform(0.35, 1.0, size=3).astype(np.float32)
        crop = crop[..., None] * tint
    crop = np.rot90(crop, int(rng.integers(4)))
    return np.ascontiguousarray(crop, dtype=np.float32)


def synthetic_triple(sources: list[np.ndarray], size: int, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, albedo, shading), each float32 (size, size, 3), image = albedo * shading."""
    albedo = _albedo_crop(sources[int(rng.integers(len(sources)))], size, rng)
    shading = shading_field(size, size, rng)
    return albedo * shading, albedo, shading


@dataclass
class IntrinsicFolder:
    """Sintel-style triples on disk, read lazily; unreadable files are skipped with a warning."""
    images: list[Path]
    albedos: list[Path]
    shadings: list[Path]

    def triple(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        try:
            got = [load_image(p) for p in (self.images[i], self.albedos[i], self.shadings[i])]
        except ImageError as err:
            log.warning("skipping unreadable triple %s: %s", self.images[i].name, err)
            return None
        h, w = min(g.shape[0] for g in got), min(g.shape[1] for g in got)
        return tuple(g[:h, :w] for g in got)  # type: ignore[return-value]


def intrinsic_folder(root: str | Path) -> IntrinsicFolder:
    root = Path(root)
    image_dir = next((root / d for d in IMAGE_DIRS if (root / d).is_dir()), None)
    if image_dir is None or not (root / "albedo").is_dir() or not (root / "shading").is_dir():
        raise DatasetError(f"{root} is not an intrinsic-image folder: it needs {'|'.join(IMAGE_DIRS)}/, "
                           f"albedo/ and shading/ with matching file names")
    suffixes = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
    rel = sorted(p.relative_to(image_dir) for p in image_dir.rglob("*") if p.suffix.lower() in suffixes)
    keep = [r for r in rel if (root / "albedo" / r).is_file() and (root / "shading" / r).is_file()]
    if not keep:
        raise DatasetError(f"No image in {image_dir} has an albedo and a shading file of the same name")
    if len(keep) < len(rel):
        log.warning("%d image(s) in %s lack albedo or shading and are ignored", len(rel) - len(keep), image_dir)
    return IntrinsicFolder([image_dir / r for r in keep], [root / "albedo" / r for r in keep],
                           [root / "shading" / r for r in keep])


def _to_batch(items: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(items)).permute(0, 3, 1, 2).contiguous()


def labelled_batch(folder: IntrinsicFolder | None, size: int, rngs: list[np.random.Generator]
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(image, albedo, shading) batches (N, 3, size, size), one triple per generator (``train.data.item_rngs``):
    synthetic when ``folder`` is None."""
    triples = []
    sources = albedo_sources("train")
    for rng in rngs:
        if folder is None:
            triples.append(synthetic_triple(sources, size, rng))
            continue
        for _ in range(100):
            got = folder.triple(int(rng.integers(len(folder.images))))
            if got is not None:
                break
        else:
            raise DatasetError(f"Too many unreadable triples in {folder.images[0].parent}")
        h, w = got[0].shape[:2]
        y, x = int(rng.integers(max(1, h - size + 1))), int(rng.integers(max(1, w - size + 1)))
        triples.append(tuple(_pad_crop(g, y, x, size) for g in got))
    return tuple(_to_batch([t[k] for t in triples]) for k in range(3))  # type: ignore[return-value]


def _pad_crop(img: np.ndarray, y: int, x: int, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    if h < size or w < size:
        img = np.pad(img, ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0)), mode="edge")
    return np.ascontiguousarray(img[y:y + size, x:x + size])


def validation_triples(count: int = 8, size: int = 256, seed: int = 1) -> list[tuple[np.ndarray, ...]]:
    """Held-out synthetic triples: validation photos as albedo, fresh shading fields (fixed for a seed)."""
    rng = np.random.default_rng([seed, 99])
    sources = albedo_sources("val")
    return [synthetic_triple(sources, size, rng) for _ in range(count)]


def unlabeled_photos(folder: str | Path | None) -> list[np.ndarray]:
    """Real photos without ground truth: the built-in training photos, or every readable image in ``folder``."""
    if folder is None:
        return [sample_photo(n) for n in SPLITS["train"]]
    from photos.io import list_images

    photos = []
    for p in list_images(folder):
        try:
            photos.append(load_image(p))
        except ImageError as err:
            log.warning("skipping unreadable photo %s: %s", p.name, err)
    if not photos:
        raise DatasetError(f"No readable photos in {folder}")
    return photos


def photo_batch(photos: list[np.ndarray], size: int, rngs: list[np.random.Generator]) -> torch.Tensor:
    """Random rotated crops of the unlabeled photos, one per generator."""
    crops = []
    for rng in rngs:
        img = photos[int(rng.integers(len(photos)))]
        h, w = img.shape[:2]
        y, x = int(rng.integers(max(1, h - size + 1))), int(rng.integers(max(1, w - size + 1)))
        crops.append(np.rot90(_pad_crop(img, y, x, size), int(rng.integers(4))).copy())
    return _to_batch(crops)
