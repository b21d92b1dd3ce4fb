"""ONNX Runtime, CPU execution provider."""
from __future__ import annotations

import platform
import re
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from ..io import THUMBNAIL, join_outputs, thumbnail_input

NAME, TARGET = "onnxruntime", "onnx"
PRECISE_INT8 = "session.x64quantprecision"  # ONNX Runtime's switch away from its saturating x86 int8 kernels
_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int8)": "int8",
           "tensor(uint8)": "uint8"}


def unavailable() -> str | None:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "onnxruntime is not installed (pip install 'dslr-mobile[onnx]')"
    return None


def saturating_cpu(machine: str, cpuinfo: str | None) -> bool:
    """Whether ONNX Runtime's default int8 kernels saturate on a CPU (``platform.machine()``, the text of
    ``/proc/cpuinfo`` or None where it cannot be read): x86 without VNNI (AVX2, AVX-512 before VNNI), where its U8S8
    kernels add pairs of uint8 x int8 products in saturating int16. 8-bit weights against wide activations overflow
    there: measured on ``dped_mobile`` on an AVX2 machine, 32.8 dB fidelity through the fused kernels against
    44.0 dB with the same file's QDQ ops in float. An x86 CPU whose flags cannot be read counts as saturating."""
    if machine.lower() not in ("x86_64", "amd64", "x86", "i386", "i686"):
        return False  # ARM's int8 dot products do not saturate
    return cpuinfo is None or re.search(r"\b(avx512_vnni|avx_vnni)\b", cpuinfo) is None


@lru_cache(maxsize=1)
def saturating_int8() -> bool:
    """``saturating_cpu`` for this machine."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        cpuinfo = None
    return saturating_cpu(platform.machine(), cpuinfo)


def session_options(threads: int | None = None, precise_int8: bool = False):
    """The session options every ONNX Runtime session of the project uses (``open_session``).

    ``precise_int8`` sets ONNX Runtime's ``session.x64quantprecision``: it turns int8 weights into uint8 for its
    exact U8U8 kernels. Wanted only where the default kernels saturate (``saturating_int8``): elsewhere it costs,
    35 % of ``dped_mobile``'s int8 time on this project's VNNI machine. A user's own session on an x86 CPU without
    VNNI needs the same entry (README, Export)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if precise_int8:
        opts.add_session_config_entry(PRECISE_INT8, "1")
        opts.log_severity_level = 4  # a graph it cannot take raises, and is opened without it (open_session)
    return opts


def open_session(path: str | Path, threads: int | None = None, profile_to: Path | None = None):
    """An ONNX Runtime CPU session with ``session_options``, the precise int8 mode where this CPU needs it, and
    (``profile_to``) ONNX Runtime's per-op profiling written under that prefix.

    ONNX Runtime 1.32 cannot apply the precise mode to mdie's int8 graph ("Attempt to replace the existing tensor"
    at session start): such a file opens without it, and the fidelity gate measures what the CPU then computes."""
    import onnxruntime as ort

    def attempt(precise: bool):
        opts = session_options(threads, precise)
        if profile_to is not None:
            opts.enable_profiling = True
            opts.profile_file_prefix = str(profile_to)
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    if not saturating_int8():
        return attempt(False)
    try:
        return attempt(True)
    except Exception:  # noqa: BLE001 - ONNX Runtime raises its own types; without the mode, a real error recurs
        return attempt(False)


def _nchw(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=dtype)


def load(path: str | Path, threads: int | None = None) -> Callable[..., np.ndarray]:
    """A function mapping float32 (H, W, 3) in [0, 1] (and for image-adaptive models the whole photo's
    thumbnail, default: the image's own) to the artifact's outputs (H, W, C), joined by name."""
    session = open_session(path, threads)
    inputs = {a.name: a for a in session.get_inputs()}
    thumb = inputs.pop(THUMBNAIL, None)
    (inp,) = inputs.values()
    dtype = np.dtype(_DTYPES[inp.type])
    names = [o.name for o in session.get_outputs()]

    def run(image: np.ndarray, thumbnail: np.ndarray | None = None) -> np.ndarray:
        feed = {inp.name: _nchw(image, dtype)}
        if thumb is not None:
            feed[THUMBNAIL] = _nchw(thumbnail_input(image, int(thumb.shape[2]), thumbnail), dtype)
        outputs = session.run(names, feed)
        return join_outputs({k: v.astype(np.float32, copy=False) for k, v in zip(names, outputs)},
                            axis=1)[0].transpose(1, 2, 0)

    return run


def _tensor(arg, exported: list[int] | None) -> dict:
    shape = [d if isinstance(d, int) else None for d in arg.shape]
    return {"name": arg.name, "dynamic_dims": [i for i, d in enumerate(shape) if d is None],
            "shape": [d if d is not None else e for d, e in zip(shape, exported or shape)],
            "dtype": _DTYPES.get(arg.type, arg.type), "quantization": None}


def describe(path: str | Path, exported_shapes: dict[str, list[int]] | None = None) -> dict:
    """What ONNX Runtime reports for the model's inputs and outputs (dynamic dims are named, not numbers: the
    shape there is taken from ``exported_shapes`` where given)."""
    session = open_session(path)
    shapes = exported_shapes or {}
    return {"signature": None,
            "inputs": sorted((_tensor(a, shapes.get(a.name)) for a in session.get_inputs()), key=lambda t: t["name"]),
            "outputs": sorted((_tensor(a, shapes.get(a.name)) for a in session.get_outputs()),
                              key=lambda t: t["name"])}


def embedded(path: str | Path) -> dict[str, str]:
    """The model's metadata properties as ONNX Runtime reads them."""
    return dict(open_session(path).get_modelmeta().custom_metadata_map)
