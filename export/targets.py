"""The table of export targets and the precisions each supports, checked before any work is done."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Target:
    name: str
    suffix: str
    precisions: tuple[str, ...]
    module: str           # the module that converts and runs this format
    install: str          # what to install when its backend is missing

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)

    def sidecar_name(self, stem: str) -> str:
        """TFLite keeps the contract's ``<model>_<precision>.json``; the other targets add their suffix
        (``dped_mobile_fp32.onnx.json``) so that exporting every target into one folder collides nowhere."""
        return f"{stem}.json" if self.name == "tflite" else f"{stem}{self.suffix}.json"


TARGETS: dict[str, Target] = {
    "tflite": Target("tflite", ".tflite", ("fp32", "fp16", "dynamic-int8", "int8"), "export.tflite",
                     "pip install litert-torch ai-edge-litert"),
    "onnx": Target("onnx", ".onnx", ("fp32", "fp16", "int8"), "export.onnx", "pip install 'dslr-mobile[onnx]'"),
    "coreml": Target("coreml", ".mlpackage", ("fp32", "fp16", "int8", "palettized"), "export.coreml",
                     "pip install 'dslr-mobile[coreml]'"),
    "tensorrt": Target("tensorrt", ".engine", ("fp32", "fp16", "int8"), "export.tensorrt",
                       "pip install 'dslr-mobile[tensorrt]' on a machine with an NVIDIA GPU and CUDA"),
}


def resolve(target: str, precision: str) -> list[tuple[Target, str]]:
    """(target, precision) pairs for a command line; 'all' expands. Raises ValueError listing valid choices."""
    if target != "all" and target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose from: {', '.join([*TARGETS, 'all'])}")
    chosen = list(TARGETS.values()) if target == "all" else [TARGETS[target]]
    pairs = [(t, p) for t in chosen for p in (t.precisions if precision == "all" else (precision,))
             if p in t.precisions]
    if not pairs:
        table = "; ".join(f"{t.name}: {', '.join(t.precisions)}" for t in chosen)
        raise ValueError(f"precision {precision!r} is not supported by {target}; supported: {table}")
    return pairs
