"""Export one model to one target and precision, then prove its numbers against PyTorch before keeping it."""
from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

from models import conv_macs_per_pixel, count_parameters, create_model, fold_batchnorm, list_models
from models.registry import WEIGHTS_DIR

from quantize.calibration import calibration_images

from .common import (INT8_PRECISIONS, ExportError, ExportSpec, Fidelity, MissingBackend, check_size,
                     fidelity_inputs, fidelity_sample, torch_reference, versions, write_sidecar)
from .targets import Target

VERSION_PACKAGES = {"tflite": ("litert-torch", "ai-edge-litert", "ai-edge-quantizer"),
                    "onnx": ("onnx", "onnxruntime"), "coreml": ("coremltools",),
                    "tensorrt": ("tensorrt", "onnx", "onnxruntime")}


def export_one(spec: ExportSpec, target: Target) -> dict:
    """Convert, run the fidelity gate, write ``OUT/<model>_<precision><suffix>`` + ``.json``; return the record.

    An artifact that fails its gate is renamed ``<file>.rejected`` (with ``<stem>.rejected.json``) so that
    nothing left in OUT looks valid; the record then has ``status`` 'failed_fidelity'.
    """
    start = time.perf_counter()
    backend = target.load()
    model = exportable_model(spec)
    folded = fold_batchnorm(model)
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    final = out / f"{spec.stem}{target.suffix}"
    sidecar = out / target.sidecar_name(spec.stem)
    rejected_sidecar = out / target.sidecar_name(f"{spec.stem}.rejected")
    for stale in (final, sidecar, Path(f"{final}.rejected"), rejected_sidecar):
        _remove(stale)
    tmp = out / f".{spec.stem}.partial{target.suffix}"

    contract = model.contract
    h, w = spec.size
    outputs = [{"name": name, "layout": "NHWC", "dtype": "float32", "shape": [1, h, w, c],
                "range": list(contract.value_range)} for name, c in contract.outputs]
    record = {
        "model": spec.model, "target": target.name, "precision": spec.precision,
        "source": spec.checkpoint or f"shipped weights (models/weights/{spec.model}.pt)",
        "input": {"name": "image", "layout": "NHWC", "dtype": "float32", "shape": [1, h, w, contract.channels],
                  "range": list(contract.value_range), "color_space": contract.color_space,
                  "resizable": not spec.fixed_size, "size_multiple": contract.size_multiple},
        "output": outputs[0], "outputs": outputs,
        "signature": "enhance", "receptive_field": contract.receptive_field, "halo": contract.halo,
        "halo_exact": contract.tile_halo is None,
        "macs_per_pixel": conv_macs_per_pixel(model), "parameters": count_parameters(model),
        "batchnorm_folded": True,
        "weights_sha256": weights_digest(spec),
        "versions": versions(*VERSION_PACKAGES.get(target.name, ())),
    }
    calibration = _calibration(spec, record)
    if target.name in ("onnx", "coreml", "tensorrt"):  # these keep PyTorch's NCHW layout
        record["input"].update(layout="NCHW", shape=[1, 3, h, w])
        for out_spec in outputs:
            out_spec.update(layout="NCHW", shape=[1, out_spec["shape"][3], h, w])
    metadata = {k: record[k] for k in ("model", "precision", "source", "input", "output", "versions")}
    try:
        backend.convert(folded, spec, tmp, metadata, calibration)
    except ExportError:
        _remove(tmp)
        raise
    except ImportError as err:
        _remove(tmp)
        raise MissingBackend(f"{target.name} needs a package that is not installed ({err}): {target.install}") \
            from None
    except Exception as err:  # a converter failure: report it as this artifact's failure, not a traceback
        _remove(tmp)
        raise ExportError(f"conversion failed: {type(err).__name__}: {str(err).strip().splitlines()[0][:300]}") \
            from err

    # Where the runtime cannot run here (Core ML off macOS), check the saved program and emulate its numerics.
    emulated = hasattr(backend, "can_run") and not backend.can_run()
    fidelity = Fidelity(spec.gate)
    reference_key = (spec.model, spec.checkpoint, weights_digest(spec))
    for name, image in fidelity_inputs(spec.size, not spec.fixed_size, contract.size_multiple):
        try:
            got = backend.emulate(folded, spec.precision, image) if emulated else backend.run(tmp, image)
        except Exception as err:  # the runtime rejected the artifact: this export's failure, not a traceback
            _remove(tmp)
            raise ExportError(f"the exported {target.name} artifact does not run on {name}: {type(err).__name__}: "
                              f"{str(err).strip().splitlines()[0][:300]}") from err
        fidelity.samples.append(fidelity_sample(name, got, _reference(reference_key, name, model, image)))
    fid = fidelity.to_dict()
    passed = fidelity.passed
    if emulated:
        problems = backend.check_program(tmp, spec.precision)
        fid.update(mode="emulated", program=backend.program_summary(tmp), program_problems=problems,
                   note=f"{target.name} cannot run on this machine: figures are emulated in PyTorch")
        passed = passed and not problems
    else:
        fid["mode"] = "measured"
    fid["passed"] = passed

    if hasattr(backend, "io_spec"):  # the I/O types the converter actually produced (int8 I/O: scale, zero point)
        io = backend.io_spec(tmp)
        record["input"].update(io["input"])
        for out_spec in outputs:
            out_spec.update(io["outputs"].get(out_spec["name"], {}))
    record.update(size_bytes=artifact_size(tmp), fidelity=fid,
                  export_seconds=round(time.perf_counter() - start, 1))
    if passed:
        tmp.replace(final)
        record.update(status="ok", artifact=str(final))
        write_sidecar(sidecar, record)
    else:
        rejected = Path(f"{final}.rejected")
        tmp.replace(rejected)  # works for files and for .mlpackage folders
        record.update(status="failed_fidelity", artifact=str(rejected))
        write_sidecar(rejected_sidecar, record)
    return record


def check_exportable(name: str, size: tuple[int, int]) -> None:
    """Usage errors before any work: a model that does not take photos, or a size its graph cannot take."""
    contract = create_model(name).contract
    if contract.channels != 3:
        raise ValueError(f"{name} takes {contract.channels}-channel intrinsics, not photos: it is deployed inside "
                         f"'mdie' (--model mdie). Models that take photos: "
                         f"{', '.join(m for m in list_models() if create_model(m).contract.channels == 3)}")
    check_size(size, contract.size_multiple, name)


def exportable_model(spec: ExportSpec):
    check_exportable(spec.model, spec.size)
    return create_model(spec.model, pretrained=spec.checkpoint is None, checkpoint=spec.checkpoint)


def artifact_size(path: Path) -> int:
    """Bytes of an artifact: a file, or a folder such as a .mlpackage."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _calibration(spec: ExportSpec, record: dict) -> list | None:
    if spec.precision not in INT8_PRECISIONS:
        return None
    images = calibration_images(spec.calibration, spec.size, spec.calibration_count)
    record["calibration"] = {"source": spec.calibration or "built-in training photos", "count": len(images),
                             "size": list(spec.size)}
    return images


def prepare_tensorrt(spec: ExportSpec, target: Target) -> dict:
    """Without a GPU: write the ONNX, calibration tensors and trtexec command a GPU machine builds from."""
    model = exportable_model(spec)
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"model": spec.model, "target": target.name, "precision": spec.precision, "status": "prepared",
              "source": spec.checkpoint or f"shipped weights (models/weights/{spec.model}.pt)",
              "missing_here": target.load().missing(), "versions": versions("onnx", "onnxruntime")}
    record.update(target.load().prepare(fold_batchnorm(model), spec, out, _calibration(spec, record)))
    write_sidecar(out / f"{spec.stem}.trtexec.json", record)
    return record


def weights_digest(spec: ExportSpec) -> str:
    """SHA-256 of the checkpoint an export was made from, so that a reused artifact can be matched to it."""
    path = Path(spec.checkpoint) if spec.checkpoint else WEIGHTS_DIR / f"{spec.model}.pt"
    return hashlib.sha256(path.read_bytes()).hexdigest()


_REFERENCES: dict = {}


def _reference(key: tuple, name: str, model, image):
    """PyTorch fp32 output for a fidelity input, computed once per weights and input in a process."""
    if (key, name) not in _REFERENCES:
        _REFERENCES[(key, name)] = torch_reference(model, image)
    return _REFERENCES[(key, name)]
