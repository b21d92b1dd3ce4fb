"""Compress an exported float artifact (no PyTorch model needed) and gate it against its source."""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from artifacts import Calibration, Quantization, Sidecar, TensorSpec, load, runtime_for, target_of
from artifacts.cli import check_interrupted
from artifacts.embed import embed
from artifacts.fidelity import fidelity_inputs, measure
from artifacts.quiet import quiet
from artifacts.sidecar import FloatCost, Written, package_versions
from artifacts.targets import artifact_size, remove_artifact
from artifacts.timing import float_cost

from .calibration import calibration_images

log = logging.getLogger("quantize")


class QuantizeError(ValueError):
    """A request that cannot be met: an already-quantized source, an output that would overwrite something."""


def check_request(src: Path, source: Sidecar, out: Path, force: bool) -> None:
    """What can be refused before any work: a source that is not fp32, an --out of another format, the source
    itself, or an existing output (unless ``force``)."""
    target = target_of(src)
    if source.precision != "fp32":
        raise QuantizeError(f"{src.name} is already {source.precision}: quantize an fp32 artifact")
    if not out.name.endswith(target.suffix):
        raise QuantizeError(f"--out {out.name} must end in {target.suffix}, like the source")
    if out.resolve() == src.resolve():
        raise QuantizeError(f"--out {out} is the source artifact itself; choose another file")
    if not force and (out.exists() or target.sidecar_path(out).exists()):
        raise QuantizeError(f"{out} or its sidecar already exists; pass --force to overwrite it")


def quantize_artifact(src: Path, source: Sidecar, precision: str, out: Path, calibration: str | None = None,
                      calibration_count: int = 8, force: bool = False, method: str | None = None,
                      float_layers: tuple[str, ...] = ()) -> Written:
    """Write ``out`` (the ``precision`` version of the fp32 artifact ``src``, described by ``source``) and its
    sidecar; the result is gated against ``src`` on the held-out photos. A result that fails its gate is renamed
    ``<out>.rejected``."""
    start = time.perf_counter()
    check_request(src, source, out, force)
    target = target_of(src)
    sidecar_path = target.sidecar_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial{target.suffix}")
    int8_only = out.with_name(f".{out.name}.int8-only.partial{target.suffix}")  # float layers: all in int8
    ranges = out.with_name(f".{out.name}.ranges.partial.json")  # the calibration both of them share
    for partial in (tmp, int8_only, ranges):
        remove_artifact(partial)  # a temporary left by a run that was killed
    try:  # whatever stops it (a failure, Ctrl-C), nothing half-written is left behind
        calib = None
        if target.name == "tflite":
            from .tflite import compress

            with quiet():  # ai-edge-quantizer prints a report
                compress(src, tmp, precision)
        elif precision == "fp16":
            from .onnx import to_float16

            to_float16(src, tmp)
        else:
            from .onnx import quantize_static_qdq

            size = tuple(source.input.hw)
            images = calibration_images(calibration, size, calibration_count)
            method = method or target.precision(precision).default_method
            calib = Calibration(source=calibration or "built-in training photos", count=len(images), size=list(size),
                                method=method, float_layers=list(float_layers),
                                weight_qmax=target.precision(precision).weight_qmax)
            quantize_static_qdq(src, tmp, images, method=method, float_layers=float_layers,
                                cache=ranges if float_layers else None)
        fidelity = measure(load(tmp), load(src), fidelity_inputs(source.input.hw, False),
                           target.precision(precision).gate_db, f"the source artifact {src.name}")
        if calib is not None and float_layers and fidelity.passed:  # what they cost against all in int8
            calib = replace(calib, float_cost=_float_cost(src, tmp, int8_only, images, ranges, method,
                                                          tuple(source.input.hw)))
        inputs = [source.input, *([source.thumbnail] if source.thumbnail else [])]
        described = runtime_for(tmp).describe(tmp, *([{t.name: t.shape for t in [*inputs, *source.outputs]}]
                                                      if target.name == "onnx" else []))
        check_interrupted()  # a converter may have swallowed a Ctrl-C
        outputs = {t["name"]: t for t in described["outputs"]}
        found = {t["name"]: t for t in described["inputs"]}
        sidecar = source.replace(
            precision=precision, input=_tensor(source.input, found[source.input.name]),
            thumbnail=_tensor(source.thumbnail, found[source.thumbnail.name]) if source.thumbnail else None,
            outputs=[_tensor(t, outputs[t.name]) for t in source.outputs], fidelity=fidelity, calibration=calib,
            status="ok" if fidelity.passed else "failed_fidelity",
            source=f"{src.name} (fp32, {source.source}) compressed by python -m quantize",
            versions=package_versions(*target.versions), export_seconds=round(time.perf_counter() - start, 1),
            date=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        embed(tmp, sidecar.to_json())
        check_interrupted()
        if fidelity.passed:
            dest, dest_sidecar = out, sidecar_path
        else:
            dest = Path(f"{out}.rejected")
            dest_sidecar = out.with_name(target.sidecar_name(f"{out.name[:-len(target.suffix)]}.rejected"))
        remove_artifact(dest)
        tmp.replace(dest)
        sidecar.write(dest_sidecar)
        return Written(sidecar, dest, dest_sidecar, artifact_size(dest))
    finally:
        for partial in (tmp, int8_only, ranges):
            remove_artifact(partial)


def _float_cost(src: Path, path: Path, int8_only: Path, images: list, ranges: Path, method: str,
                size: tuple[int, int]) -> FloatCost | None:
    """``path``'s float layers against ``src`` quantized all in int8 (into ``int8_only``) with the activation
    ranges ``path`` was calibrated with (onnxruntime's cache ``ranges``: no second calibration). None, logged,
    when that cannot be measured."""
    from .onnx import quantize_static_qdq

    try:
        quantize_static_qdq(src, int8_only, images, method=method, cache=ranges)
        return float_cost(path, int8_only, size)
    except Exception as err:  # the cost is a report; the file itself passed its gate
        log.warning("the float layers' cost was not measured: %s: %s", type(err).__name__, err)
        return None


def _tensor(spec: TensorSpec, found: dict) -> TensorSpec:
    """A tensor of the source's contract with what the runtime reports for the compressed file."""
    quant = found["quantization"]
    return replace(spec, dtype=found["dtype"], shape=found["shape"], dynamic_dims=found["dynamic_dims"],
                   quantization=Quantization(**quant) if quant else None)
