"""Photo input with Pillow: any common file in, float32 RGB H x W x 3 in [0, 1] out."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MAX_PIXELS = 200_000_000  # above Pillow's default bomb limit: 12-50 MP photos are normal input here


class ImageError(ValueError):
    """A file that is not a readable image (truncated, corrupt, not an image, too large)."""


def to_rgb_float(img: Image.Image) -> np.ndarray:
    """Pillow image of any mode -> float32 (H, W, 3) RGB in [0, 1].

    Grayscale is replicated to three channels, alpha is dropped, 16-bit and 32-bit integer modes are
    scaled by their own range, palette images are expanded.
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(img, dtype=np.float32) / 65535.0
    elif img.mode == "I":
        raw = np.asarray(img)
        arr = raw.astype(np.float32) / (65535.0 if raw.max(initial=0) > 255 else 255.0)
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        arr = arr / max(float(arr.max(initial=0)), 1.0) if arr.max(initial=0) > 1 else arr
    else:
        arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return np.ascontiguousarray(np.clip(arr, 0.0, 1.0), dtype=np.float32)


def load_image(path: str | Path) -> np.ndarray:
    """Read a photo as float32 (H, W, 3) RGB in [0, 1], honouring EXIF orientation. Raises ImageError."""
    path = Path(path)
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                img = ImageOps.exif_transpose(img)
                return to_rgb_float(img)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(f"{path}: not a readable image ({str(err).strip() or type(err).__name__})") from None


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_uint8(path: str | Path) -> np.ndarray:
    """Photo as uint8 (H, W, 3) RGB, honouring EXIF orientation: 4 bytes less per pixel than float, for 12+ MP
    photos. 16-bit and float images are read through ``load_image`` and rounded. Raises ImageError."""
    path = Path(path)
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(path) as img:
            if img.mode in ("RGB", "L", "RGBA", "P", "LA", "CMYK", "YCbCr"):
                img.load()
                return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageError(f"{path}: not a readable image ({str(err).strip() or type(err).__name__})") from None
    return np.round(load_image(path) * 255).astype(np.uint8)
