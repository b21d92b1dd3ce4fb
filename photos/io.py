"""Photo input with Pillow: any common file in, float32 RGB H x W x 3 in [0, 1] (or uint8) out.

Every image the toolkit reads goes through ``open_image``, which checks the size the file declares against one
pixel limit before anything is decoded: a small file that declares a huge image is refused at once, without
allocating it. The limit is ``DEFAULT_MAX_PIXELS`` (100 MP: 12-50 MP photos are normal input here);
``set_max_pixels`` (the CLIs' ``--max-pixels``) changes it for the process.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_MAX_PIXELS = 100_000_000
_max_pixels = DEFAULT_MAX_PIXELS


def set_max_pixels(limit: int) -> None:
    """The largest image (width x height) any read in this process accepts."""
    global _max_pixels
    if limit < 1:
        raise ValueError(f"--max-pixels must be a positive number of pixels, got {limit}")
    _max_pixels = int(limit)


def max_pixels() -> int:
    return _max_pixels


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


@contextlib.contextmanager
def open_image(path: str | Path) -> Iterator[Image.Image]:
    """Open an image lazily (header only) and refuse it before decoding when it declares more pixels than the
    limit. Any failure, then or while the caller decodes it, is an ImageError naming the file."""
    path = Path(path)
    Image.MAX_IMAGE_PIXELS = None  # the check below replaces Pillow's own bomb limit (warning at 89 MP)
    try:
        with Image.open(path) as img:
            w, h = img.size
            if w * h > _max_pixels:
                raise ImageError(f"{path}: declares {w}x{h} pixels ({w * h / 1e6:.0f} MP), above the limit of "
                                 f"{_max_pixels / 1e6:g} MP (--max-pixels)")
            yield img
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not an image") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as err:
        raise ImageError(f"{path}: not a readable image ({str(err).strip() or type(err).__name__})") from None


def load_image(path: str | Path) -> np.ndarray:
    """Read a photo as float32 (H, W, 3) RGB in [0, 1], honouring EXIF orientation. Raises ImageError."""
    with open_image(path) as img:
        img.load()
        return to_rgb_float(ImageOps.exif_transpose(img))


def read_uint8(path: str | Path) -> np.ndarray:
    """Photo as uint8 (H, W, 3) RGB, honouring EXIF orientation: 4 bytes less per pixel than float, for 12+ MP
    photos. 16-bit and float images go through ``to_rgb_float`` and are rounded. Raises ImageError."""
    with open_image(path) as img:
        img.load()
        img = ImageOps.exif_transpose(img)
        if img.mode in ("RGB", "L", "RGBA", "P", "PA", "LA", "CMYK", "YCbCr", "1", "RGBX", "La", "RGBa"):
            return np.asarray(img.convert("RGB"))
        return np.round(to_rgb_float(img) * 255).astype(np.uint8)


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
