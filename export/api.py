"""Export one model to one target and precision, then prove its numbers against PyTorch before keeping it."""
from __future__ import annotations

import time
from pathlib import Path

from models import conv_macs_per_pixel, count_parameters, create_model, fold_batchnorm

from quantize.calibration import calibration_images

from .common import INT8_PRECISIONS, ExportError, ExportSpec, Fidelity, fidelity_inputs, fidelity_sample, torch_reference, versions, write_sidecar
from .targets import Target

VERSION_PACKAGES = {"tflite": ("litert-torch", "ai-edge-litert", "ai-edge-quantizer"),
                    "onnx": ("onnx", "onnxruntime")}


def export_one(spec: ExportSpec, target: Target) -> dict:
    """Convert, run the fidelity gate, write ``OUT/<model>_<precision><suffix>`` + ``.json``; return the record.

    An artifact that fails its gate is renamed ``<file>.rejected`` (with ``<stem>.rejected.json``) so that
    nothing left in OUT looks valid; the record then has ``status`` 'failed_fidelity'.
    """
    start = time.perf_counter()
    backend = target.load()
    model = create_model(spec.model, pretrained=spec.checkpoint is None, checkpoint=spec.checkpoint)
    folded = fold_batchnorm(model)
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    final = out / f"{spec.stem}{target.suffix}"
    sidecar = out / target.sidecar_name(spec.stem)
    rejected_sidecar = out / target.sidecar_name(f"{spec.stem}.rejected")
    for stale in (final, sidecar, Path(f"{final}.rejected"), rejected_sidecar):
        stale.unlink(missing_ok=True)
    tmp = out / f".{spec.stem}.partial{target.suffix}"

    contract = model.contract
    h, w = spec.size
    record = {
        "model": spec.model, "target": target.name, "precision": spec.precision,
        "source": spec.checkpoint or f"shipped weights (models/weights/{spec.model}.pt)",
        "input": {"name": "image", "layout": "NHWC", "dtype": "float32", "shape": [1, h, w, contract.channels],
                  "range": list(contract.value_range), "color_space": contract.color_space,
                  "resizable": not spec.fixed_size},
        "output": {"name": "enhanced", "layout": "NHWC", "dtype": "float32", "shape": [1, h, w, 3],
                   "range": list(contract.value_range)},
        "signature": "enhance", "receptive_field": contract.receptive_field, "halo": contract.halo,
        "macs_per_pixel": conv_macs_per_pixel(model), "parameters": count_parameters(model),
        "batchnorm_folded": True,
        "versions": versions(*VERSION_PACKAGES.get(target.name, ())),
    }
    calibration = None
    if spec.precision in INT8_PRECISIONS:
        calibration = calibration_images(spec.calibration, spec.size, spec.calibration_count)
        record["calibration"] = {"source": spec.calibration or "built-in training photos",
                                 "count": len(calibration), "size": list(spec.size)}
    if target.name == "onnx":  # ONNX keeps PyTorch's NCHW layout
        for io in ("input", "output"):
            record[io].update(layout="NCHW", shape=[1, 3, h, w])
    metadata = {k: record[k] for k in ("model", "precision", "source", "input", "output", "versions")}
    try:
        backend.convert(folded, spec, tmp, metadata, calibration)
    except (ImportError, ExportError):
        raise
    except Exception as err:  # a converter failure: report it as this artifact's failure, not a traceback
        tmp.unlink(missing_ok=True)
        raise ExportError(f"conversion failed: {type(err).__name__}: {str(err).strip().splitlines()[0][:300]}") \
            from err

    fidelity = Fidelity(spec.gate)
    for name, image in fidelity_inputs(spec.size, resizable=not spec.fixed_size):
        fidelity.samples.append(fidelity_sample(name, backend.run(tmp, image), torch_reference(model, image)))

    record.update(size_bytes=tmp.stat().st_size, fidelity=fidelity.to_dict(),
                  export_seconds=round(time.perf_counter() - start, 1))
    if fidelity.passed:
        tmp.replace(final)
        record.update(status="ok", artifact=str(final))
        write_sidecar(sidecar, record)
    else:
        rejected = Path(f"{final}.rejected")
        tmp.replace(rejected)
        record.update(status="failed_fidelity", artifact=str(rejected))
        write_sidecar(rejected_sidecar, record)
    return record
