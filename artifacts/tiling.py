"""Tiled inference: any photo size through a fixed tile size, with memory flat in the image size.

The plan covers the image with *owned* cores of (tile - 2 * halo) pixels per side. Every core is computed in a
window of exactly tile x tile pixels (fewer only where the image itself is smaller), placed at core - halo and
pushed back inside the image at the borders. A core pixel is therefore either at least ``halo`` pixels from its
window's edge or on the image's own edge, where the window and the whole image see the same zero padding. With
halo >= the receptive radius of a BatchNorm-folded fully convolutional model, the stitched result equals the
whole-image result (no blending needed, so no seams). An image-adaptive model takes the whole photo's thumbnail
with every tile (``thumbnail`` > 0): made once per photo, it keeps the stitched result equal as well.

The Android app (android_demo/) implements the same plan; tests/fixtures/tiling.json pins both to it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np


@dataclass(frozen=True)
class Tile:
    wy: int; wx: int; wh: int; ww: int   # window in the image: top, left, height, width   # noqa: E702
    oy: int; ox: int; oh: int; ow: int   # owned core in the image                          # noqa: E702

    def core_in_window(self) -> tuple[slice, slice]:
        return slice(self.oy - self.wy, self.oy - self.wy + self.oh), slice(self.ox - self.wx, self.ox - self.wx + self.ow)


def _axis(size: int, tile: int, halo: int) -> list[tuple[int, int, int, int]]:
    """(window start, window length, core start, core length) along one axis, in order."""
    if size <= tile:
        return [(0, size, 0, size)]
    core = tile - 2 * halo
    out = []
    for start in range(0, size, core):
        length = min(core, size - start)
        window = min(max(start - halo, 0), size - tile)
        out.append((window, tile, start, length))
    return out


def plan_tiles(height: int, width: int, tile: int, halo: int) -> list[Tile]:
    """Tiles in row-major order (top to bottom, then left to right within a row)."""
    if height < 1 or width < 1:
        raise ValueError(f"image must be at least 1x1, got {height}x{width}")
    if tile <= 2 * halo:
        raise ValueError(f"tile ({tile}) must be larger than twice the halo ({halo}): each tile needs a core")
    return [Tile(wy, wx, wh, ww, oy, ox, oh, ow)
            for wy, wh, oy, oh in _axis(height, tile, halo)
            for wx, ww, ox, ow in _axis(width, tile, halo)]


def iter_windows(image: np.ndarray, plan: list[Tile]) -> Iterator[tuple[Tile, np.ndarray]]:
    for t in plan:
        yield t, image[t.wy:t.wy + t.wh, t.wx:t.wx + t.ww]


def enhance_tiled(image: np.ndarray, fn: Callable[..., np.ndarray], tile: int, halo: int,
                  out: np.ndarray | None = None, progress: Callable[[int, int], None] | None = None,
                  thumbnail: int = 0) -> np.ndarray:
    """Run ``fn`` (float32 (h, w, 3) in [0, 1] -> same) tile by tile over ``image`` (H, W, 3).

    ``image`` may be uint8 (converted per window) or float; the result is written into ``out`` (default: a new
    uint8 array when the input is uint8, else float32), so peak memory is the image, the output and one tile.
    ``thumbnail`` > 0: ``fn`` also takes ``thumbnail=`` the whole image's (artifacts.thumbnail), the same for
    every tile.
    """
    if thumbnail:
        from .thumbnail import thumbnail as make

        whole, inner = make(image, thumbnail), fn
        fn = lambda window: inner(window, thumbnail=whole)  # noqa: E731
    plan = plan_tiles(image.shape[0], image.shape[1], tile, halo)
    if out is None:
        out = np.empty(image.shape, dtype=np.uint8 if image.dtype == np.uint8 else np.float32)
    for i, (t, window) in enumerate(iter_windows(image, plan)):
        x = window.astype(np.float32) / 255.0 if image.dtype == np.uint8 else np.asarray(window, np.float32)
        y = fn(np.ascontiguousarray(x))
        core = np.clip(y[t.core_in_window()], 0.0, 1.0)
        out[t.oy:t.oy + t.oh, t.ox:t.ox + t.ow] = (np.round(core * 255).astype(np.uint8)
                                                   if out.dtype == np.uint8 else core)
        if progress:
            progress(i + 1, len(plan))
    return out


def padded(fn: Callable[..., np.ndarray], multiple: int = 1,
           size: tuple[int, int] | None = None) -> Callable[..., np.ndarray]:
    """``fn`` for windows of any size: each window is edge-padded at the bottom and right to ``size`` (a graph
    exported at a fixed size) or up to multiples of ``multiple`` (stride-32 encoders), and the output cropped
    back. Windows that already fit pass through untouched."""
    def run(window: np.ndarray, **kwargs) -> np.ndarray:  # kwargs: the thumbnail of an image-adaptive model
        h, w = window.shape[:2]
        th, tw = size if size else (-(-h // multiple) * multiple, -(-w // multiple) * multiple)
        if (th, tw) == (h, w):
            return fn(window, **kwargs)
        if th < h or tw < w:
            raise ValueError(f"window {h}x{w} is larger than the model's fixed size {th}x{tw}")
        return fn(np.pad(window, ((0, th - h), (0, tw - w), (0, 0)), mode="edge"), **kwargs)[:h, :w]

    return run

