"""Export one model to one target and precision, then prove its numbers against PyTorch before keeping it."""
from __future__ import annotations

import hashlib
import importlib
import json
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from artifacts import TARGETS, Calibration, Fidelity, Quantization, Sidecar, Target, TensorSpec, load, runtime
from artifacts.cli import check_interrupted
from artifacts.embed import embed
from artifacts.fidelity import fidelity_inputs, measure
from artifacts.runtimes.tensorrt import missing
from artifacts.sidecar import FloatCost, Written, package_versions as versions
from artifacts.io import THUMBNAIL
from artifacts.thumbnail import METHOD as THUMBNAIL_METHOD
from artifacts.targets import artifact_size, remove_artifact
from artifacts.timing import float_cost
from models import conv_macs_per_pixel, count_parameters, create_model, fold_batchnorm, list_models
from models.contract import thumbnail_size
from models.registry import weights_sha256
from quantize.calibration import calibration_images

from .common import ExportError, ExportSpec, MissingBackend, check_size, torch_reference

# --fidelity-target: weight-side methods (quantize.weights) tried all in int8, with the default export's LeakyReLU
# swap, before any layer is floated; none costs anything at run time (README: which ones reach 45 dB)
FREE_RECIPES = ((), ("smoothquant",), ("cle",), ("bias-correction",))

DEFAULT_TILE = 256  # python -m enhance's default: a third of the peak memory of 512 px for the same time


def export_one(spec: ExportSpec, progress: Callable[[str], None] | None = None) -> Written:
    """Convert, run the fidelity gate, write ``OUT/<model>_<precision><suffix>`` and its sidecar.

    With ``spec.fidelity_target`` the file all in int8 is converted and gated first; if it falls short of the
    target and no weight-side method was asked for, the recipes of ``FREE_RECIPES`` (free at run time) are tried,
    all in int8, and the best that reaches the target is taken. If none does, the backend proposes
    layers to keep in float (best first), and each is converted and gated in turn until one passes (``progress``
    hears why it moves on). A file with float layers records what they cost against the all-int8 file
    (``calibration.float_cost``).

    The sidecar's tensor fields are what the runtime reports for the file; the same JSON is embedded in the
    artifact's metadata. An artifact that fails its gate is renamed ``<file>.rejected`` (with
    ``<stem>.rejected.json``) so that nothing left in OUT looks valid; its sidecar's status is 'failed_fidelity'.
    """
    start = time.perf_counter()
    spec.check_recipe()
    target = TARGETS[spec.target]
    backend = importlib.import_module(f"export.{target.name}")
    model = exportable_model(spec)
    check_size(spec.size, _contract(backend, model).size_multiple, spec.model)
    folded = fold_batchnorm(model)
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    final = out / f"{spec.stem}{target.suffix}"
    sidecar_path = out / target.sidecar_name(spec.stem)
    rejected, rejected_sidecar = Path(f"{final}.rejected"), out / target.sidecar_name(f"{spec.stem}.rejected")
    for stale in (final, sidecar_path, rejected, rejected_sidecar):
        remove_artifact(stale)
    tmp = out / f".{spec.stem}.partial{target.suffix}"
    int8_only = out / f".{spec.stem}.int8-only.partial{target.suffix}"  # float layers: the same file all in int8
    free_trial = out / f".{spec.stem}.free.partial{target.suffix}"  # the search's files of FREE_RECIPES
    for partial in (tmp, int8_only, free_trial):
        remove_artifact(partial)  # a temporary left by a run that was killed
    try:  # whatever stops the export (a failure, Ctrl-C), nothing half-written is left behind
        calibration, images = _calibration(spec)
        converted, calibration = _to_convert(spec, model, folded, images, calibration)
        say = progress or (lambda _: None)
        choices = [spec.float_layers]
        if spec.fidelity_target is not None:  # mixed precision: which layers stay in float, measured
            # first the file all in int8: it may reach the target as it is, it tells the search what the converter
            # makes of its all-int8 graph, and the chosen file's cost is timed against it
            fidelity, described = _convert_and_gate(replace(spec, float_layers=()), target, backend, model, folded,
                                                    converted, images, int8_only)
            say(f"all layers int8, converted and gated: {fidelity.psnr_db_min:.2f} dB (target {spec.gate:g} dB)")
            if not fidelity.passed and not spec.weight_methods and not spec.float_layers:
                # recipes that cost nothing at run time first, all in int8: the best that reaches the target is
                # taken (as a start for floating layers, smoothquant measured no better than plain: README)
                free = _free_recipe(spec, target, backend, model, folded, images, calibration, free_trial,
                                    int8_only, say)
                if free is not None:
                    spec, converted, calibration, (fidelity, described) = free
            if fidelity.passed:
                int8_only.replace(tmp)
                choices = []
            else:
                # scored as the gate scores: against the unchanged model (not the LeakyReLU-swapped one), on the
                # gate's photos (TFLite's PT2E graph takes the export size only: not the one at its own size)
                inputs = fidelity_inputs(spec.size, not spec.fixed_size and spec.target == "onnx",
                                         _contract(backend, model).size_multiple)
                gate_reference = _gate_reference(spec, model)
                reference = [gate_reference(image) for _, image in inputs]
                choices = [tuple(c) for c in backend.choose_float_layers(converted, spec, images, inputs, out,
                                                                        progress, reference, fidelity.psnr_db_min)]
        for i, layers in enumerate(choices):
            spec = replace(spec, float_layers=layers)
            fidelity, described = _convert_and_gate(spec, target, backend, model, folded, converted, images, tmp)
            if fidelity.passed or i == len(choices) - 1:
                break
            say(f"--float-layers {','.join(layers)}: {fidelity.psnr_db_min:.1f} dB once converted, below "
                f"{spec.gate:g} dB; trying {','.join(choices[i + 1])}")
        if calibration is not None:
            calibration = replace(calibration, float_layers=list(spec.float_layers))
            if spec.float_layers and fidelity.passed:
                calibration = replace(calibration, float_cost=_float_cost(spec, backend, converted, images, tmp,
                                                                          int8_only, say))

        contract = _contract(backend, model)
        inputs = {t["name"]: t for t in described["inputs"]}
        image, thumb = inputs[contract.input_name], inputs.get(THUMBNAIL)
        channels = dict(contract.outputs)

        def tensor(t: dict) -> TensorSpec:
            """The runtime's report; where it leaves an output's shape open (Core ML), the input's size and dims."""
            quant = t["quantization"]
            shape = t["shape"] if t["shape"] is not None else \
                [1, channels[t["name"]], *image["shape"][2:]] if target.layout == "NCHW" else \
                [1, *image["shape"][1:3], channels[t["name"]]]
            dynamic = t["dynamic_dims"] if t["dynamic_dims"] is not None else image["dynamic_dims"]
            return TensorSpec(name=t["name"], layout=target.layout, shape=shape, dynamic_dims=dynamic, dtype=t["dtype"],
                              range=[float(v) for v in contract.value_range],
                              quantization=Quantization(**quant) if quant else None)

        tile = min(spec.size) if spec.fixed_size else \
            -(-max(DEFAULT_TILE, 4 * contract.halo) // contract.size_multiple) * contract.size_multiple
        sidecar = Sidecar(
            model=spec.model, target=target.name, precision=spec.precision, runtime=target.runtime,
            signature=described["signature"], input=tensor(image),
            outputs=[tensor(t) for t in described["outputs"]], color_space=contract.color_space,
            size_multiple=contract.size_multiple, receptive_field=contract.receptive_field, halo=contract.halo,
            halo_exact=contract.tile_halo is None, tile=tile, macs_per_pixel=conv_macs_per_pixel(model),
            parameters=count_parameters(model), batchnorm_folded=True,
            source=spec.checkpoint or f"shipped weights (models/weights/{spec.model}.pt)",
            weights_sha256=weights_digest(spec), fidelity=fidelity, calibration=calibration,
            status="ok" if fidelity.passed else "failed_fidelity", versions=versions(*target.versions),
            export_seconds=round(time.perf_counter() - start, 1),
            thumbnail=tensor(thumb) if thumb else None,
            thumbnail_method=THUMBNAIL_METHOD.format(size=contract.thumbnail) if thumb else "")
        embed(tmp, sidecar.to_json())
        check_interrupted()
        dest, dest_sidecar = (final, sidecar_path) if fidelity.passed else (rejected, rejected_sidecar)
        tmp.replace(dest)  # works for files and for .mlpackage folders
        sidecar.write(dest_sidecar)
        return Written(sidecar, dest, dest_sidecar, artifact_size(dest))
    finally:
        for partial in (tmp, int8_only, free_trial):
            remove_artifact(partial)


def _free_recipe(spec: ExportSpec, target: Target, backend, model, folded, images, calibration: Calibration,
                 trial: Path, best: Path, say: Callable[[str], None]) -> tuple | None:
    """Every one of ``FREE_RECIPES`` all in int8, with the LeakyReLUs swapped as the default export swaps them,
    converted into ``trial`` and gated at ``spec``'s target: (its spec, what was converted, its calibration record,
    (fidelity, what the runtime reports)) of the highest that reaches the target, its file moved to ``best``; None
    if none does."""
    from quantize.activations import min_db

    found = None
    for methods in FREE_RECIPES:
        if not methods and min_db(spec.fidelity_target) == min_db(None):
            continue  # the plain file at the default floor: the one just gated
        free = replace(spec, weight_methods=methods, float_layers=())
        try:
            converted, record = _to_convert(free, model, folded, images,
                                            replace(calibration, weight_methods=list(methods)), default_floor=True)
        except ValueError as err:  # a structure the method cannot rescale (quantize.weights says which)
            say(f"--weight-methods {','.join(methods)} skipped: {err}")
            continue
        fidelity, described = _convert_and_gate(free, target, backend, model, folded, converted, images, trial)
        say(f"all layers int8 as by default, with --weight-methods {','.join(methods) or '(none)'}: "
            f"{fidelity.psnr_db_min:.2f} dB")
        if fidelity.passed and (found is None or fidelity.psnr_db_min > found[3][0].psnr_db_min):
            trial.replace(best)
            found = free, converted, record, (fidelity, described)
    return found


def _to_convert(spec: ExportSpec, model, folded, images, calibration: Calibration | None,
                default_floor: bool = False) -> tuple:
    """(what the converter quantizes, the calibration record): the BN-folded model with ``spec``'s weight-side
    methods and the LeakyReLU swap applied, at the floor of ``spec.fidelity_target`` (``default_floor``: the
    default export's); the gate still compares against the model itself."""
    converted = folded
    if spec.weight_methods:
        from quantize.weights import apply

        converted = apply(folded, spec.weight_methods, images, thumbnail_size(model), calibration.weight_qmax)
    if calibration is not None and spec.relu:  # LeakyReLUs whose slope measures as harmless: fused ReLUs
        from quantize import activations

        converted, relus, floor = activations.swap(converted, images, thumbnail_size(model) or 0,
                                                   None if default_floor else spec.fidelity_target, spec.float_layers)
        calibration = replace(calibration, relu_layers=relus, relu_min_db=floor)
    return converted, calibration


def _convert_and_gate(spec: ExportSpec, target: Target, backend, model, folded, converted, images, tmp: Path
                      ) -> tuple[Fidelity, dict]:
    """Convert ``converted`` into ``tmp``; (its gate's fidelity, what its runtime reports)."""
    try:
        backend.convert(converted, spec, tmp, images)
    except ExportError:  # MissingBackend included: the converter said what is wrong
        raise
    except ImportError as err:
        raise MissingBackend(f"{target.name} needs a package that is not installed ({err}): {target.install}") \
            from None
    except Exception as err:  # a converter failure: report it as this artifact's failure, not a traceback
        raise ExportError(f"conversion failed: {type(err).__name__}: {str(err).strip().splitlines()[0][:300]}") \
            from err
    check_interrupted()  # the converter may have swallowed a Ctrl-C
    try:
        return _gate(spec, target, backend, model, folded, tmp), _describe(target, spec, model.contract, tmp)
    except Exception as err:  # the runtime rejected the artifact: this export's failure, not a traceback
        raise ExportError(f"the exported {target.name} artifact does not run: {type(err).__name__}: "
                          f"{str(err).strip().splitlines()[0][:300]}") from err


def _float_cost(spec: ExportSpec, backend, converted, images, path: Path, int8_only: Path,
                say: Callable[[str], None]) -> FloatCost | None:
    """What ``spec.float_layers`` cost: ``path`` against the same model with every layer in int8 (``int8_only``,
    converted here unless a search already did), at the export size. None, said, when that cannot be measured."""
    try:
        if not int8_only.exists():
            backend.convert(converted, replace(spec, float_layers=()), int8_only, images)
        return float_cost(path, int8_only, spec.size)
    except Exception as err:  # the cost is a report; the artifact itself passed its gate
        say(f"the float layers' cost was not measured: {type(err).__name__}: "
            f"{str(err).strip().splitlines()[0][:200]}")
        return None


def size_multiple(model, target: str) -> int:
    """H and W of ``target``'s files of ``model`` must be multiples of this (the sidecar's ``size_multiple``)."""
    return _contract(importlib.import_module(f"export.{target}"), model).size_multiple


def _contract(backend, model):
    """The model's deployment contract as the target's file has it: an exact rewrite may need a larger size
    multiple (``export.tflite.size_multiple``)."""
    if not hasattr(backend, "size_multiple"):
        return model.contract
    return replace(model.contract, size_multiple=backend.size_multiple(model))


def _gate(spec: ExportSpec, target: Target, backend, model, folded, path: Path) -> Fidelity:
    """Fidelity against PyTorch fp32: measured in the target's runtime, or emulated where it cannot run here
    (Core ML off macOS), then with the saved program checked as well."""
    contract = _contract(backend, model)
    inputs = fidelity_inputs(spec.size, not spec.fixed_size, contract.size_multiple)
    reference = _gate_reference(spec, model)
    reference_name = "PyTorch fp32 output of the same weights"
    reason = runtime(target.runtime).unavailable()
    if reason and hasattr(backend, "emulate"):
        return measure(lambda image: backend.emulate(folded, spec.precision, image), reference, inputs, spec.gate,
                       reference_name, mode="emulated", problems=backend.check_program(path, spec.precision),
                       note=f"{reason}: figures are emulated in PyTorch; the saved program is checked")
    return measure(load(path), reference, inputs, spec.gate, reference_name)


def _describe(target: Target, spec: ExportSpec, contract, path: Path) -> dict:
    mod = runtime(target.runtime)
    if target.name == "onnx":  # ONNX Runtime names its dynamic dims: take the exported size for the shape
        return mod.describe(path, _onnx_shapes(contract, spec.size))
    return mod.describe(path)


def _onnx_shapes(contract, size: tuple[int, int]) -> dict[str, list[int]]:
    shapes = {contract.input_name: [1, contract.channels, *size]}
    shapes.update({name: [1, c, *size] for name, c in contract.outputs})
    return shapes


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


def _calibration(spec: ExportSpec) -> tuple[Calibration | None, list | None]:
    if not spec.calibrated:
        return None, None
    images = calibration_images(spec.calibration, spec.size, spec.calibration_count)
    return Calibration(source=spec.calibration or "built-in training photos", count=len(images),
                       size=list(spec.size), method=spec.method or "", float_layers=list(spec.float_layers),
                       qat_steps=spec.qat_steps if spec.method == "qat" else 0,
                       weight_methods=list(spec.weight_methods),
                       weight_qmax=TARGETS[spec.target].precision(spec.precision).weight_qmax), images


def prepare_tensorrt(spec: ExportSpec) -> dict:
    """Without a GPU: write the ONNX, calibration tensors and trtexec command a GPU machine builds from."""
    from . import tensorrt

    model = exportable_model(spec)
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    calibration, images = _calibration(spec)
    record = {"model": spec.model, "target": "tensorrt", "precision": spec.precision, "status": "prepared",
              "source": spec.checkpoint or f"shipped weights (models/weights/{spec.model}.pt)",
              "missing_here": missing(), "versions": versions("onnx", "onnxruntime"),
              "calibration": asdict(calibration) if calibration else None,
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    record.update(tensorrt.prepare(fold_batchnorm(model), spec, out, images))
    (out / f"{spec.stem}.trtexec.json").write_text(json.dumps(record, indent=2))
    return record


def weights_digest(spec: ExportSpec) -> str:
    """SHA-256 of the checkpoint an export was made from, so that a reused artifact can be matched to it."""
    return weights_sha256(spec.model, spec.checkpoint)


_REFERENCES: dict = {}


def _gate_reference(spec: ExportSpec, model) -> Callable[[np.ndarray], np.ndarray]:
    """The gate's reference: the PyTorch fp32 output of ``model`` (the unchanged one) for a fidelity input."""
    key = (spec.model, spec.checkpoint, weights_digest(spec))
    return lambda image: _reference(key, image, model)


def _reference(key: tuple, image, model):
    """PyTorch fp32 output for a fidelity input, computed once per weights and input in a process."""
    ident = (key, image.shape, hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest())
    if ident not in _REFERENCES:
        _REFERENCES[ident] = torch_reference(model, image)
    return _REFERENCES[ident]
