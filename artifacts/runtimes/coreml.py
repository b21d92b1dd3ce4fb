"""Core ML (predictions on macOS only). Elsewhere ``load`` is unavailable; ``describe`` reads the saved model's
spec with coremltools, which works on any OS."""
from __future__ import annotations

import platform
from pathlib import Path
from typing import Callable

import numpy as np

from ..io import THUMBNAIL, join_outputs, thumbnail_input

NAME, TARGET = "coreml", "coreml"


def unavailable() -> str | None:
    if platform.system() != "Darwin":
        return "Core ML runs only on macOS"
    try:
        import coremltools  # noqa: F401
    except ImportError:
        return "coremltools is not installed (pip install 'dslr-mobile[coreml]')"
    return None


def load(path: str | Path, threads: int | None = None) -> Callable[..., np.ndarray]:
    """A function mapping float32 (H, W, 3) in [0, 1] (and for image-adaptive models the whole photo's
    thumbnail, default: the image's own) to the model's outputs (H, W, C) (macOS only)."""
    reason = unavailable()
    if reason:
        raise RuntimeError(reason)
    import coremltools as ct

    model = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.CPU_ONLY)
    inputs = {t["name"]: t for t in describe(path)["inputs"]}
    thumb = inputs.pop(THUMBNAIL, None)
    (inp,) = inputs.values()
    dtype = np.dtype(inp["dtype"])

    def nchw(x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=dtype)

    def run(image: np.ndarray, thumbnail: np.ndarray | None = None) -> np.ndarray:
        feed = {inp["name"]: nchw(image)}
        if thumb is not None:
            feed[THUMBNAIL] = nchw(thumbnail_input(image, int(thumb["shape"][2]), thumbnail))
        outputs = {k: np.asarray(v, dtype=np.float32) for k, v in model.predict(feed).items()}
        return join_outputs(outputs, axis=1)[0].transpose(1, 2, 0)

    return run


def _spec(path: str | Path):
    import coremltools as ct

    return ct.models.MLModel(str(path), skip_model_load=True).get_spec()


def _tensor(feature) -> dict:
    from coremltools.proto import FeatureTypes_pb2 as ft

    array = feature.type.multiArrayType
    dtype = {ft.ArrayFeatureType.FLOAT32: "float32", ft.ArrayFeatureType.FLOAT16: "float16",
             ft.ArrayFeatureType.DOUBLE: "float64", ft.ArrayFeatureType.INT32: "int32"}[array.dataType]
    if not array.shape:  # ML programs leave output shapes to run time: shape and dynamic dims unknown here
        return {"name": feature.name, "shape": None, "dynamic_dims": None, "dtype": dtype, "quantization": None}
    ranges = array.shapeRange.sizeRanges
    return {"name": feature.name, "shape": [int(d) for d in array.shape], "dtype": dtype, "quantization": None,
            "dynamic_dims": [i for i, r in enumerate(ranges) if r.upperBound != r.lowerBound]}


def describe(path: str | Path) -> dict:
    """The model description in the saved spec: input and output names, dtypes, shapes and flexible dims (an
    output's shape and dims are None: an ML program's spec does not state them)."""
    desc = _spec(path).description
    return {"signature": None, "inputs": sorted((_tensor(f) for f in desc.input), key=lambda t: t["name"]),
            "outputs": sorted((_tensor(f) for f in desc.output), key=lambda t: t["name"])}


def embedded(path: str | Path) -> dict[str, str]:
    return dict(_spec(path).description.metadata.userDefined)
