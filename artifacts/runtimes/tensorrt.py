"""TensorRT engines on a CUDA GPU (the engine's I/O buffers are PyTorch CUDA tensors)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..io import THUMBNAIL, join_outputs, thumbnail_input

NAME, TARGET = "tensorrt", "tensorrt"


def missing() -> list[str]:
    """What this machine lacks for building and running engines (empty when it can)."""
    import torch

    gaps = []
    if not torch.cuda.is_available():
        gaps.append(f"a CUDA GPU (torch {torch.__version__} sees none)")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        gaps.append("the tensorrt package (pip install 'dslr-mobile[tensorrt]')")
    return gaps


def unavailable() -> str | None:
    gaps = missing()
    return f"TensorRT needs {' and '.join(gaps)}" if gaps else None


def _engine(path: str | Path):
    reason = unavailable()
    if reason:
        raise RuntimeError(reason)
    import tensorrt as trt

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    return trt, runtime.deserialize_cuda_engine(Path(path).read_bytes())


def load(path: str | Path, threads: int | None = None) -> Callable[..., np.ndarray]:
    """A function mapping float32 (H, W, 3) in [0, 1] (and for image-adaptive models the whole photo's
    thumbnail, default: the image's own) to the engine's outputs (H, W, C), on the GPU."""
    import torch

    trt, engine = _engine(path)
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    (inp,) = [n for n in inputs if n != THUMBNAIL]
    outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

    def cuda(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(x, dtype=np.float32)).permute(2, 0, 1)[None].contiguous().cuda()

    def run(image: np.ndarray, thumbnail: np.ndarray | None = None) -> np.ndarray:
        feed = {inp: cuda(image)}
        if THUMBNAIL in inputs:
            size = int(engine.get_tensor_shape(THUMBNAIL)[2])
            feed[THUMBNAIL] = cuda(thumbnail_input(image, size, thumbnail))
        for n, x in feed.items():
            context.set_input_shape(n, tuple(x.shape))
            context.set_tensor_address(n, x.data_ptr())
        ys = {n: torch.empty(tuple(context.get_tensor_shape(n)), device="cuda") for n in outputs}
        for n, y in ys.items():
            context.set_tensor_address(n, y.data_ptr())
        stream = torch.cuda.current_stream()
        if not context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT inference failed")
        stream.synchronize()
        return join_outputs({k: v[0].permute(1, 2, 0).cpu().numpy() for k, v in ys.items()})

    return run


def describe(path: str | Path) -> dict:
    """Engine I/O tensors as TensorRT reports them (-1 marks a dimension set per run by the profile)."""
    trt, engine = _engine(path)
    dtypes = {trt.float32: "float32", trt.float16: "float16", trt.int8: "int8"}
    found: dict[str, list] = {"inputs": [], "outputs": []}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        shape = list(engine.get_tensor_shape(name))
        # the optimisation profile covers the dynamic inputs only (not a fixed-size thumbnail)
        dynamic_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT and min(shape) < 0
        profile_max = list(engine.get_tensor_profile_shape(name, 0)[1]) if dynamic_input else shape
        kind = "inputs" if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else "outputs"
        found[kind].append({"name": name, "shape": [int(d) if d >= 0 else int(o) for d, o in zip(shape, profile_max)],
                            "dynamic_dims": [j for j, d in enumerate(shape) if d < 0],
                            "dtype": dtypes.get(engine.get_tensor_dtype(name), str(engine.get_tensor_dtype(name))),
                            "quantization": None})
    found["outputs"].sort(key=lambda t: t["name"])
    found["inputs"].sort(key=lambda t: t["name"])
    return {"signature": None, **found}


def embedded(path: str | Path) -> dict[str, str]:
    """Engines carry no metadata: their contract is the sidecar alone."""
    return {}
