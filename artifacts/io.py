"""The artifacts' I/O rule, shared by the exporters and the runtime loaders (imports numpy only), and the atomic
file write every command uses for its outputs.

A model with several outputs (the intrinsic decomposer: albedo, shading) is compared, scored and tiled as one
array: its outputs concatenated on the channel axis in name order, which is also the order the model's contract
lists them in. A single output is returned as it is.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Mapping

import numpy as np


IMAGE, THUMBNAIL = "image", "thumbnail"   # input names: the photo (or tile), and an image-adaptive model's thumbnail


def thumbnail_input(image: np.ndarray, size: int, given: np.ndarray | None) -> np.ndarray:
    """The thumbnail an artifact takes with ``image``: ``given`` (a tile's: that of the whole photo), else the
    image's own (the image is the whole photo), float32 (size, size, 3)."""
    from .thumbnail import thumbnail

    t = given if given is not None else thumbnail(image, size)
    if t.shape != (size, size, 3):
        raise ValueError(f"the thumbnail must be {size}x{size}x3, got {'x'.join(map(str, t.shape))}")
    return np.asarray(t, dtype=np.float32)


def join_outputs(outputs: Mapping[str, np.ndarray], axis: int = -1) -> np.ndarray:
    if len(outputs) == 1:
        return next(iter(outputs.values()))
    return np.concatenate([outputs[k] for k in sorted(outputs)], axis=axis)


def quantize_input(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float input -> the tensor's dtype; an int8/uint8 tensor takes round(x / scale) + zero_point, saturated.
    ``detail`` is a LiteRT tensor detail (``dtype``, ``quantization`` = (scale, zero_point))."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.rint(x / scale) + zero_point, info.min, info.max).astype(dtype)


def dequantize_output(y: np.ndarray, detail: dict) -> np.ndarray:
    """An output tensor -> float32: (q - zero_point) * scale for integer tensors."""
    if np.dtype(detail["dtype"]).kind == "f":
        return y.astype(np.float32, copy=False)
    scale, zero_point = detail["quantization"]
    return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)


def write_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, renamed when complete: a reader
    never sees a half-written file, and an interrupted write leaves the old one (or none)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def png_bytes(fig, dpi: int) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is then closed), for ``write_atomic``."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return buf.getvalue()
