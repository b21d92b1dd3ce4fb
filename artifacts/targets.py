"""The one table of export targets: what each format is, which runtime runs it, and what each precision needs.

Every other list of targets, precisions, suffixes, gates or runtimes in the project is derived from ``TARGETS``;
the command lines' help and errors are written from it too.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Precision:
    name: str
    gate_db: float            # fidelity gate: worst PSNR (dB) of the artifact's output against PyTorch fp32
    calibration: bool = False  # needs calibration images (static activation quantization)
    from_float: bool = False   # python -m quantize can make it from this target's fp32 artifact alone
    methods: tuple[str, ...] = ()  # calibration methods (--calibration-method), the default first
    mixed: bool = False        # chosen layers can stay in float (--float-layers)
    searched: bool = False     # and the exporter can choose them for a fidelity target (--fidelity-target)
    weight_qmax: int = 127     # calibrated int8: per-channel symmetric weight integers lie in [-weight_qmax, weight_qmax]
    leaky_as_relu: bool = False  # LeakyReLUs measured harmless as ReLUs become ReLUs (quantize.activations)

    @property
    def default_method(self) -> str | None:
        return self.methods[0] if self.methods else None


@dataclass(frozen=True)
class Target:
    name: str
    suffix: str               # file (or package folder) suffix
    runtime: str              # the module in artifacts.runtimes that runs it
    layout: str               # layout of the image tensors: NHWC or NCHW
    install: str              # what to install when its converter or runtime is missing
    versions: tuple[str, ...]  # packages whose versions the sidecar records
    precisions: dict[str, Precision]

    def precision(self, name: str) -> Precision:
        if name not in self.precisions:
            raise ValueError(f"precision {name!r} is not supported by {self.name}; supported: "
                             f"{', '.join(self.precisions)}")
        return self.precisions[name]

    def sidecar_name(self, stem: str) -> str:
        """TFLite keeps the contract's ``<model>_<precision>.json``; the other targets add their suffix
        (``dped_mobile_fp32.onnx.json``) so that exporting every target into one folder collides nowhere."""
        return f"{stem}.json" if self.name == "tflite" else f"{stem}{self.suffix}.json"

    def sidecar_path(self, artifact: str | Path) -> Path:
        artifact = Path(artifact)
        return artifact.with_name(self.sidecar_name(artifact.name[: -len(self.suffix)]))


def _precisions(*items: Precision) -> dict[str, Precision]:
    return {p.name: p for p in items}


FP32, FP16 = Precision("fp32", 60.0), Precision("fp16", 45.0)
TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("tflite", ".tflite", "litert", "NHWC", "pip install litert-torch ai-edge-litert",
           ("litert-torch", "ai-edge-litert", "ai-edge-quantizer"),
           _precisions(FP32, Precision("fp16", 45.0, from_float=True),
                       Precision("dynamic-int8", 35.0, from_float=True),
                       Precision("int8", 35.0, calibration=True, methods=("histogram", "minmax", "qat"),
                                 mixed=True, searched=True, leaky_as_relu=True))),
    Target("onnx", ".onnx", "onnxruntime", "NCHW", "pip install 'dslr-mobile[onnx]'", ("onnx", "onnxruntime"),
           _precisions(FP32, Precision("fp16", 45.0, from_float=True),
                       Precision("int8", 35.0, calibration=True, from_float=True,
                                 methods=("percentile", "minmax"), mixed=True, searched=True, leaky_as_relu=True))),
    Target("coreml", ".mlpackage", "coreml", "NCHW", "pip install 'dslr-mobile[coreml]'", ("coremltools",),
           _precisions(FP32, FP16, Precision("int8", 35.0), Precision("palettized", 35.0))),
    Target("tensorrt", ".engine", "tensorrt", "NCHW",
           "pip install 'dslr-mobile[tensorrt]' on a machine with an NVIDIA GPU and CUDA",
           ("tensorrt", "onnx", "onnxruntime"),
           _precisions(FP32, FP16, Precision("int8", 35.0, calibration=True))),
)}

ALL_PRECISIONS: tuple[str, ...] = tuple(dict.fromkeys(p for t in TARGETS.values() for p in t.precisions))


def table() -> str:
    """The targets and their precisions, one line each, for --help."""
    return "\n".join(f"  {t.name:<8} {', '.join(t.precisions):<32} {t.suffix:<10} run by {t.runtime}"
                     for t in TARGETS.values())


def resolve(target: str, precision: str) -> list[tuple[Target, str]]:
    """(target, precision) pairs for a command line; 'all' expands. Raises ValueError listing valid choices."""
    if target != "all" and target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose from: {', '.join([*TARGETS, 'all'])}")
    chosen = list(TARGETS.values()) if target == "all" else [TARGETS[target]]
    pairs = [(t, p) for t in chosen for p in (t.precisions if precision == "all" else (precision,))
             if p in t.precisions]
    if not pairs:
        listing = "; ".join(f"{t.name}: {', '.join(t.precisions)}" for t in chosen)
        raise ValueError(f"precision {precision!r} is not supported by {target}; supported: {listing}")
    return pairs


def target_of(path: str | Path) -> Target:
    """The target an artifact belongs to, by its suffix. Raises ValueError naming the known suffixes."""
    name = Path(path).name
    for t in TARGETS.values():
        if name.endswith(t.suffix):
            return t
    raise ValueError(f"{name}: not an exported artifact (known suffixes: "
                     f"{', '.join(t.suffix for t in TARGETS.values())})")


def precision_of(path: str | Path) -> str | None:
    """The precision in an artifact's name (``<model>_<precision><suffix>``), or None."""
    stem = Path(path).name[: -len(target_of(path).suffix)]
    return next((p for p in sorted(ALL_PRECISIONS, key=len, reverse=True) if stem.endswith(f"_{p}")), None)


def artifact_size(path: str | Path) -> int:
    """Bytes of an artifact: a file, or a folder such as a .mlpackage."""
    path = Path(path)
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def remove_artifact(path: str | Path) -> None:
    """Delete an artifact if present: a file, or a folder such as a .mlpackage."""
    import shutil

    path = Path(path)
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def check_recipe(target: Target, precision: str, method: str | None, float_layers: bool,
                 fidelity_target: bool = False) -> None:
    """Raise ValueError (naming the option) when a calibration method or layers kept in float do not fit this
    target and precision; ``python -m export`` and ``python -m quantize`` check the same way."""
    p = target.precision(precision)
    if method and method not in p.methods:
        raise ValueError(f"--calibration-method {method}: {target.name} {precision} takes "
                         f"{', '.join(p.methods) or 'no calibration method'}")
    for option, asked, able, what in (("--float-layers", float_layers, "mixed", "keep layers in float"),
                                      ("--fidelity-target", fidelity_target, "searched",
                                       "choose float layers for a fidelity target")):
        if asked and not getattr(p, able):
            can = [f"{t.name} {q.name}" for t in TARGETS.values() for q in t.precisions.values() if getattr(q, able)]
            raise ValueError(f"{option}: {target.name} {precision} cannot {what}; {', '.join(can)} can")
