"""What every export target shares: the export spec, sample inputs, the fidelity gate and the sidecar JSON."""
from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
import platform
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from skimage.transform import resize

from enhance.samples import sample_photos

from .io import join_outputs

DEFAULT_SIZE = (512, 512)
FIDELITY_GATES_DB = {"fp32": 60.0, "fp16": 45.0, "dynamic-int8": 35.0, "int8": 35.0, "palettized": 35.0}
INT8_PRECISIONS = ("int8",)  # precisions that need calibration images


class ExportError(RuntimeError):
    """The conversion itself failed (message says why)."""


class MissingBackend(ExportError):
    """This machine lacks what a target needs (a package, CUDA, macOS); the message says exactly what."""


@contextlib.contextmanager
def quiet():
    """Silence converters' console output (progress bars, absl, torchao and coremltools notices) at the file
    descriptor level, where C++ code writes too; replay the last of it if the block fails."""
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as log:
        os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-4000:])
            raise
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


@dataclass
class ExportSpec:
    model: str = "dped_mobile"
    checkpoint: str | None = None           # None: shipped weights
    precision: str = "fp32"
    size: tuple[int, int] = DEFAULT_SIZE    # H, W traced at export
    fixed_size: bool = False                # True when --size was given: no resizing at run time
    out: Path = Path("exported")
    gate_db: float | None = None            # None: FIDELITY_GATES_DB[precision]
    calibration: str | None = None          # image folder for int8 calibration (None: built-in photos)
    calibration_count: int = 4              # calibration crops at the export size

    @property
    def stem(self) -> str:
        return f"{self.model}_{self.precision}"

    @property
    def gate(self) -> float:
        return self.gate_db if self.gate_db is not None else FIDELITY_GATES_DB[self.precision]


@dataclass
class Fidelity:
    gate_db: float
    samples: list[dict] = field(default_factory=list)   # {"photo", "hw", "psnr_db", "max_abs_diff"}

    @property
    def psnr_db(self) -> float:
        return min(s["psnr_db"] for s in self.samples)

    @property
    def passed(self) -> bool:
        return self.psnr_db >= self.gate_db

    def to_dict(self) -> dict:
        return {"psnr_db_min": round(self.psnr_db, 2), "gate_db": self.gate_db, "passed": self.passed,
                "reference": "PyTorch fp32 output of the same weights", "samples": self.samples}


def parse_size(text: str) -> tuple[int, int]:
    """'720x1280' -> (720, 1280) as (H, W)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must look like HxW (e.g. 512x512), got {text!r}") from None
    if h < 8 or w < 8:
        raise ValueError(f"--size must be at least 8x8, got {text!r}")
    return h, w


def fidelity_inputs(size: tuple[int, int], resizable: bool, multiple: int = 1) -> list[tuple[str, np.ndarray]]:
    """Sample photos (held-out built-in photos) as float32 (H, W, 3) inputs for the fidelity gate.

    Each photo resized to the export size; for a resizable artifact one photo also at its own size (cropped to
    a multiple of ``multiple``, the contract's size_multiple).
    """
    photos = sample_photos("val")
    inputs = [(f"{name}@{size[0]}x{size[1]}", resize(p, size, order=1, anti_aliasing=True).astype(np.float32))
              for name, p in photos.items()]
    if resizable:
        name, p = next(iter(photos.items()))
        p = p[:p.shape[0] - p.shape[0] % multiple, :p.shape[1] - p.shape[1] % multiple]
        inputs.append((f"{name}@{p.shape[0]}x{p.shape[1]}", np.ascontiguousarray(p, dtype=np.float32)))
    return inputs


def check_size(size: tuple[int, int], multiple: int, model: str) -> None:
    if size[0] % multiple or size[1] % multiple:
        raise ValueError(f"{model} needs H and W in multiples of {multiple} (five stride-2 levels); "
                         f"got --size {size[0]}x{size[1]}")


@torch.no_grad()
def torch_reference(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """PyTorch output for one (H, W, 3) image, as (H, W, C); several outputs joined as artifacts join them."""
    x = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1)[None]
    y = model(x)
    if isinstance(y, tuple):
        y = torch.from_numpy(join_outputs(dict(zip(model.contract.output_names, (t.numpy() for t in y))), axis=1))
    return y[0].permute(1, 2, 0).numpy()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def fidelity_sample(name: str, out: np.ndarray, ref: np.ndarray) -> dict:
    value = psnr(out, ref)
    return {"photo": name, "hw": list(ref.shape[:2]), "psnr_db": round(value, 2) if math.isfinite(value) else 999.0,
            "max_abs_diff": float(np.abs(out.astype(np.float64) - ref).max())}


def versions(*packages: str) -> dict[str, str]:
    found = {"python": platform.python_version()}
    for pkg in ("dslr-mobile", "torch", *packages):
        try:
            found[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            found[pkg] = "not installed"
    return found


def write_sidecar(path: Path, record: dict) -> None:
    record = {**record, "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    path.write_text(json.dumps(record, indent=2, default=_jsonable))


def _jsonable(obj):
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    raise TypeError(type(obj).__name__)
