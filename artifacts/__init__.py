"""The artifact layer every other part stands on (imports no PyTorch): the table of targets, the typed sidecar,
the fidelity gate, the I/O rule, tiled inference, and one loader per runtime.

    from artifacts import TARGETS, Sidecar, load
    run = load("exported/dped_mobile_fp32.tflite", threads=2)   # float32 (H, W, 3) in [0, 1] -> same
    contract = Sidecar.read("exported/dped_mobile_fp32.json")
"""
from .runtimes import load, runtime, runtime_for
from .sidecar import (SCHEMA_VERSION, Calibration, Fidelity, Quantization, Sidecar, SidecarError, TensorSpec,
                      sidecar_for)
from .targets import ALL_PRECISIONS, TARGETS, Precision, Target, resolve, target_of

__all__ = ["ALL_PRECISIONS", "Calibration", "Fidelity", "Precision", "Quantization", "SCHEMA_VERSION", "Sidecar",
           "SidecarError", "TARGETS", "Target", "TensorSpec", "load", "resolve", "runtime", "runtime_for",
           "sidecar_for", "target_of"]
