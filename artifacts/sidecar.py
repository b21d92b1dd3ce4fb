"""The sidecar: an exported artifact's contract, written next to it as JSON and embedded in it.

``Sidecar`` is the Python twin of ``android_demo/core``'s ``Sidecar.java`` (same field names). Every exported
artifact carries the same JSON in its own metadata (TFLite metadata entry, ONNX metadata property, Core ML
user-defined metadata, each under ``dslr_mobile``), so a file that travels alone still knows its contract. The
tensor fields (dtype, shape, dynamic dims, quantization) are what the runtime itself reports for the file.

Reading a sidecar of another schema version, or a JSON file that is not a dslr-mobile sidecar, raises
``SidecarError`` with a one-line message.
"""
from __future__ import annotations

import json
import math
import platform
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from .io import write_atomic

SCHEMA = "dslr-mobile/sidecar"
SCHEMA_VERSION = 2
METADATA_KEY = "dslr_mobile"   # the key of the embedded copy in every format's metadata
DTYPES = ("float32", "float16", "int8", "uint8")


class SidecarError(ValueError):
    """A sidecar that cannot be read: not JSON, not ours, another schema version, or a field missing or wrong."""


@dataclass(frozen=True)
class Quantization:
    """An integer tensor's affine map: real = (q - zero_point) * scale."""
    scale: float
    zero_point: int

    def levels(self, low: float, high: float, dtype: str) -> int:
        """How many integer levels fall inside the real interval [low, high] for this tensor's dtype."""
        qmin, qmax = (-128, 127) if dtype == "int8" else (0, 255)
        lo = max(qmin, math.ceil(low / self.scale + self.zero_point - 1e-6))
        hi = min(qmax, math.floor(high / self.scale + self.zero_point + 1e-6))
        return max(0, hi - lo + 1)


@dataclass(frozen=True)
class TensorSpec:
    name: str                      # the name an app passes or reads (signature key for TFLite)
    layout: str                    # NHWC or NCHW
    shape: list[int]               # the shape as exported (the traced size)
    dynamic_dims: list[int]        # axes the runtime lets you resize (H and W of a resizable artifact)
    dtype: str                     # as the runtime reports it: float32, float16, int8 or uint8
    range: list[float]             # range of the real values: [0, 1] for images
    quantization: Quantization | None = None   # integer tensors only

    @property
    def channels(self) -> int:
        return self.shape[3] if self.layout == "NHWC" else self.shape[1]

    @property
    def hw(self) -> tuple[int, int]:
        return (self.shape[1], self.shape[2]) if self.layout == "NHWC" else (self.shape[2], self.shape[3])


@dataclass(frozen=True)
class FidelitySample:
    photo: str                     # '<photo>@<H>x<W>'
    hw: list[int]
    psnr_db: float                 # 999.0 when identical
    max_abs_diff: float


@dataclass(frozen=True)
class Fidelity:
    gate_db: float
    psnr_db_min: float
    passed: bool
    mode: str                      # 'measured' by the runtime, or 'emulated' (Core ML off macOS)
    reference: str                 # what the outputs were compared with
    samples: list[FidelitySample]
    program_problems: list[str] = field(default_factory=list)   # Core ML: what the saved program gets wrong
    note: str = ""


@dataclass(frozen=True)
class FloatCost:
    """What an int8 file's float layers cost against the same file with them in int8, measured by the export on the
    machine that exported it: both files alternated run by run (artifacts.timing) on one input of ``size``."""
    size: list[int]                # H, W timed
    threads: int
    runs: int
    int8_ms: float                 # median time of the all-int8 file
    extra_ms: float                # median, run by run, of this file's time minus the all-int8 file's
    int8_bytes: int                # the all-int8 file's size
    extra_bytes: int               # this file's size minus it, both as converted (before this sidecar is embedded)


@dataclass(frozen=True)
class Calibration:
    source: str                    # image folder, or 'built-in training photos'
    count: int                     # crops
    size: list[int]                # crop H, W
    method: str = ""               # activation range method (--calibration-method); "" in files made before it
    float_layers: list[str] = field(default_factory=list)   # kept in float (TFLite: and all computed from them)
    qat_steps: int = 0             # method 'qat': quantization-aware fine-tuning steps (0: calibration alone)
    weight_methods: list[str] = field(default_factory=list)   # quantize.weights methods applied before quantizing
    weight_qmax: int = 0           # weight integers lie in [-weight_qmax, weight_qmax]; 0 in files made before it
    relu_layers: list[str] = field(default_factory=list)    # LeakyReLUs run as ReLUs (quantize.activations)
    relu_min_db: float = 0.0       # ... chosen to keep the float model this close to itself; 0: none considered
    float_cost: FloatCost | None = None   # float_layers' cost in time and size (python -m export); None: not measured


@dataclass(frozen=True)
class Sidecar:
    model: str
    target: str
    precision: str
    runtime: str                   # the artifacts.runtimes module that runs it
    signature: str | None          # TFLite signature key; None for other targets
    input: TensorSpec
    outputs: list[TensorSpec]
    color_space: str               # 'RGB' (sRGB-encoded)
    size_multiple: int             # H and W must be multiples of this
    receptive_field: int           # pixels one output pixel sees, along one axis
    halo: int                      # tile overlap per side
    halo_exact: bool               # tiled output equals whole-image output (else a measured approximation)
    tile: int                      # recommended tile size (pixels, halo included) for photos of any size
    macs_per_pixel: int
    parameters: int
    batchnorm_folded: bool
    source: str                    # the weights the artifact was made from
    weights_sha256: str | None
    fidelity: Fidelity | None
    calibration: Calibration | None
    status: str                    # 'ok' or 'failed_fidelity'
    versions: dict[str, str]
    export_seconds: float
    thumbnail: TensorSpec | None = None   # image-adaptive models: the second input, the whole photo's thumbnail
    thumbnail_method: str = ""            # how to make it (the same for every tile of a photo)
    date: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    schema: str = SCHEMA
    schema_version: int = SCHEMA_VERSION

    @property
    def resizable(self) -> bool:
        return bool(self.input.dynamic_dims)

    def replace(self, **changes: Any) -> Sidecar:
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def write(self, path: str | Path) -> Path:
        """Write atomically (temporary file in the same folder, then rename)."""
        return write_atomic(path, (self.to_json() + "\n").encode())

    @classmethod
    def from_json(cls, text: str, where: str = "sidecar") -> Sidecar:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise SidecarError(f"{where} is not valid JSON ({err.msg}, line {err.lineno})") from None
        return cls.from_dict(data, where)

    @classmethod
    def read(cls, path: str | Path) -> Sidecar:
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise SidecarError(f"{path}: no such sidecar") from None
        except (OSError, UnicodeDecodeError) as err:
            raise SidecarError(f"{path}: cannot read ({err})") from None
        return cls.from_json(text, str(path))

    @classmethod
    def from_dict(cls, data: Any, where: str = "sidecar") -> Sidecar:
        if not isinstance(data, dict):
            raise SidecarError(f"{where} is not a JSON object")
        if data.get("schema") != SCHEMA:
            if "schema_version" not in data and "model" in data and "input" in data:
                raise SidecarError(f"{where} was written by an older dslr-mobile (no schema_version); re-export "
                                   f"the artifact with python -m export")
            raise SidecarError(f"{where} is not a dslr-mobile sidecar (its 'schema' is {data.get('schema')!r}, "
                               f"expected {SCHEMA!r})")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise SidecarError(f"{where} has schema_version {data.get('schema_version')!r}; this dslr-mobile reads "
                               f"version {SCHEMA_VERSION}: re-export the artifact")
        return _build(cls, data, where)


def _build(cls: type, data: Any, where: str) -> Any:
    """Dataclass ``cls`` from a dict, nested dataclasses included; names the first bad field."""
    if not isinstance(data, dict):
        raise SidecarError(f"{where} is not an object")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise SidecarError(f"{where} has unknown field(s) {', '.join(unknown)}")
    kwargs = {}
    for f in fields(cls):
        key = f"{where}.{f.name}"
        if f.name not in data:
            if f.default is not MISSING or f.default_factory is not MISSING:
                continue
            raise SidecarError(f"{where} lacks the field {f.name}")
        kwargs[f.name] = _value(_HINTS[cls][f.name], data[f.name], key)
    sidecar = cls(**kwargs)
    if cls is TensorSpec:
        _check_tensor(sidecar, where)
    return sidecar


def _value(hint: Any, value: Any, where: str) -> Any:
    nested = _NESTED.get(hint)
    if nested is not None:
        return _build(nested, value, where)
    if hint in _OPTIONAL:
        return None if value is None else _value(_OPTIONAL[hint], value, where)
    kind = _KINDS[hint]
    if kind == "list[sample]":
        if not isinstance(value, list):
            raise SidecarError(f"{where} is not a list")
        return [_build(FidelitySample, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if kind == "list[tensor]":
        if not isinstance(value, list) or not value:
            raise SidecarError(f"{where} must be a non-empty list")
        return [_build(TensorSpec, v, f"{where}[{i}]") for i, v in enumerate(value)]
    checks = {"str": lambda v: isinstance(v, str), "bool": lambda v: isinstance(v, bool),
              "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              "list[int]": lambda v: isinstance(v, list) and all(isinstance(x, int) for x in v),
              "list[float]": lambda v: isinstance(v, list) and all(isinstance(x, (int, float)) for x in v),
              "list[str]": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
              "dict[str,str]": lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values())}
    if not checks[kind](value):
        raise SidecarError(f"{where} should be {kind}, got {json.dumps(value)[:60]}")
    return float(value) if kind == "float" else value


def _check_tensor(t: TensorSpec, where: str) -> None:
    if t.layout not in ("NHWC", "NCHW"):
        raise SidecarError(f"{where}.layout is {t.layout!r}; expected NHWC or NCHW")
    if len(t.shape) != 4:
        raise SidecarError(f"{where}.shape must have 4 dimensions, got {t.shape}")
    if t.dtype not in DTYPES:
        raise SidecarError(f"{where}.dtype is {t.dtype!r}; expected one of {', '.join(DTYPES)}")
    if t.dtype in ("int8", "uint8") and (t.quantization is None or not t.quantization.scale > 0):
        raise SidecarError(f"{where}.quantization needs scale > 0 and zero_point for an {t.dtype} tensor")
    if len(t.range) != 2 or not t.range[0] < t.range[1]:
        raise SidecarError(f"{where}.range must be [low, high] with low < high")


# Field annotations are strings (postponed evaluation); the readers above need only these few kinds.
_NESTED = {"Quantization": Quantization, "Fidelity": Fidelity, "Calibration": Calibration,
           "TensorSpec": TensorSpec, "FloatCost": FloatCost}
_OPTIONAL = {"TensorSpec | None": "TensorSpec", "Quantization | None": "Quantization", "Fidelity | None": "Fidelity",
             "Calibration | None": "Calibration", "FloatCost | None": "FloatCost", "str | None": "str"}
_KINDS = {"str": "str", "bool": "bool", "int": "int", "float": "float", "list[int]": "list[int]",
          "list[float]": "list[float]", "list[str]": "list[str]", "dict[str, str]": "dict[str,str]",
          "list[FidelitySample]": "list[sample]", "list[TensorSpec]": "list[tensor]"}
_HINTS = {cls: {f.name: f.type for f in fields(cls)}
          for cls in (Quantization, TensorSpec, FidelitySample, Fidelity, FloatCost, Calibration, Sidecar)}


@dataclass(frozen=True)
class Written:
    """An artifact written with its sidecar (by python -m export or python -m quantize)."""
    sidecar: Sidecar
    artifact: Path          # the final file, or ``<file>.rejected`` when the gate failed
    sidecar_path: Path
    size_bytes: int

    @property
    def ok(self) -> bool:
        return self.sidecar.status == "ok"


def package_versions(*packages: str) -> dict[str, str]:
    """Installed versions of python, dslr-mobile, torch and ``packages``, for the sidecar."""
    found = {"python": platform.python_version()}
    for pkg in ("dslr-mobile", "torch", *packages):
        try:
            found[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            found[pkg] = "not installed"
    return found


def sidecar_for(artifact: str | Path) -> Sidecar:
    """The sidecar written next to an artifact by python -m export or python -m quantize."""
    from .targets import target_of

    path = target_of(artifact).sidecar_path(artifact)
    if not path.exists():
        raise SidecarError(f"{artifact}: its sidecar {path.name} is missing (it holds the halo and the I/O "
                           f"contract); re-export the artifact or put the sidecar next to it")
    return Sidecar.read(path)
