"""python -m quantize sensitivity: which layers int8 hurts, one at a time, with each target's own quantizer.

Examples:
  python -m quantize sensitivity --model dped_mobile --target tflite   # PT2E, the TFLite recipe
  python -m quantize sensitivity --model dped --target tflite --size 256x256 --fidelity-target 45
  python -m export --target onnx --model dped                      # the float file the ONNX report starts from
  python -m quantize sensitivity exported/dped_fp32.onnx           # table, JSON and chart in benchmark_results/
  python -m quantize sensitivity exported/dped_fp32.onnx --size 256x256 --calibration-method minmax
  python -m quantize sensitivity --model dped --target onnx        # the same, from the model (float file made here)

For each layer: the fidelity (worst PSNR against float on the held-out photos, clean and phone side) with only that
layer in int8, and with every layer but it in int8; the layer's activation range and its weights' per-channel
range. Most sensitive first. From --model, "float" is the model as the int8 export quantizes it, with the
LeakyReLUs it runs as ReLUs; the report gives that swap's own fidelity against the unchanged model, which the
export's gate compares with.

- ONNX: each trial re-quantizes the fp32 file with onnxruntime, as python -m quantize does.
- TFLite: the network is calibrated once with PT2E (the export's recipe), and each trial runs PT2E's graph in
  PyTorch with some quantize/dequantize pairs removed. "All but it" is what --float-layers builds on TFLite: the
  layer and everything computed from it in float.

With --fidelity-target it then chooses what to keep in float and prints the --float-layers to pass (python -m
export --fidelity-target does the same search by itself): on ONNX the most sensitive layers first, one at a time,
until the target is met; on TFLite the layer from which on the network can run in float, the fewest floated
layers first, then by bisection.

Exit status: 0 report written, 1 failed (or a checkpoint that does not load), 2 usage error, 130 interrupted.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from artifacts import TARGETS, SidecarError, target_of
from artifacts.cli import parse_size
from artifacts.fidelity import fidelity_inputs, psnr
from artifacts.sidecar import sidecar_for

from .calibration import calibration_images
from .sensitivity import Trials, analyze, choose_float_layers, relu_swap_text, write_report

SENSITIVE_TARGETS = ("tflite", "onnx")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m quantize sensitivity", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifact", nargs="?", default=None,
                   help="an fp32 .onnx written by python -m export (its sidecar next to it); or give --model")
    p.add_argument("--model", default=None, help="a registered model (shipped weights unless --checkpoint)")
    p.add_argument("--checkpoint", default=None, help="with --model: weights to analyse instead of the shipped ones")
    p.add_argument("--target", default=None, choices=SENSITIVE_TARGETS,
                   help="whose int8 quantizer (default: the artifact's target; tflite with --model)")
    p.add_argument("--size", default=None, help="HxW of the calibration crops and the scored photos (default: the "
                                                "artifact's export size; 512x512 with --model)")
    p.add_argument("--calibration", default=None, help="image folder (default: built-in training photos)")
    p.add_argument("--calibration-count", type=int, default=4)
    p.add_argument("--calibration-method", default=None,
                   help="activation ranges: " + "; ".join(f"{t} {', '.join(TARGETS[t].precision('int8').methods)}"
                                                          for t in SENSITIVE_TARGETS) + " (default: the first; "
                                                                                         "qat is not a trial)")
    p.add_argument("--fidelity-target", type=float, default=None,
                   help="also choose the layers to keep in float to reach this fidelity (dB)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime or PyTorch threads (default: all cores)")
    p.add_argument("--out", default=None, help="report folder (default: benchmark_results/sensitivity/<name>)")
    return p


def _usage(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, str, tuple[int, int]]:
    """(target, calibration method, size) of a valid request; ValueError (or SidecarError) naming what is not."""
    if (args.artifact is None) == (args.model is None):
        raise ValueError("give an fp32 .onnx artifact or --model NAME (one of the two)")
    if args.checkpoint and not args.model:
        raise ValueError("--checkpoint goes with --model")
    if args.calibration_count < 1:
        raise ValueError(f"--calibration-count must be at least 1, got {args.calibration_count}")
    if args.calibration and not Path(args.calibration).is_dir():
        raise ValueError(f"--calibration {args.calibration}: no such folder")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    if args.artifact is not None:
        src = Path(args.artifact)
        if target_of(src).name != "onnx":
            raise ValueError(f"{src.name}: an artifact must be an fp32 .onnx; for TFLite give --model NAME "
                             f"--target tflite (its trials run the PyTorch graph)")
        if args.target not in (None, "onnx"):
            raise ValueError(f"--target {args.target} does not fit {src.name}")
        if not src.is_file():
            raise ValueError(f"{src}: no such artifact")
        source = sidecar_for(src)
        if source.precision != "fp32":
            raise ValueError(f"{src.name} is {source.precision}: sensitivity starts from the fp32 file")
        target, size, multiple, name = "onnx", tuple(source.input.hw), source.size_multiple, source.model
    else:
        from export.api import check_exportable, size_multiple
        from export.common import DEFAULT_SIZE
        from models import create_model

        target, size, name = args.target or "tflite", DEFAULT_SIZE, args.model
        check_exportable(args.model, size)
        multiple = size_multiple(create_model(args.model), target)  # what the converted graph takes
    methods = TARGETS[target].precision("int8").methods
    method = args.calibration_method or methods[0]
    if method not in methods or method == "qat":
        raise ValueError(f"--calibration-method {method}: {target} trials take "
                         f"{', '.join(m for m in methods if m != 'qat')}")
    size = parse_size(args.size) if args.size else size
    if size[0] % multiple or size[1] % multiple:
        raise ValueError(f"--size {args.size}: {name} needs multiples of {multiple}")
    return target, method, size


def _model_trials(args: argparse.Namespace, target: str, method: str, size: tuple[int, int],
                  work: Path) -> tuple[object, dict | None]:
    """Trials of --model for ``target`` (PT2E's graph for TFLite, or its fp32 ONNX written into ``work``), and the
    LeakyReLU swap the int8 export makes, if any: which ones, and how far the swapped float model is from the
    unchanged one on the trials' photos (the trials measure against the swapped one, the export's gate against the
    unchanged one)."""
    from dataclasses import replace

    import torch

    from export.api import exportable_model
    from export.common import ExportSpec
    from models import fold_batchnorm

    spec = ExportSpec(model=args.model, checkpoint=args.checkpoint, target=target, precision="fp32", size=size,
                      calibration=args.calibration, calibration_count=args.calibration_count)
    model = fold_batchnorm(exportable_model(spec))
    images = calibration_images(args.calibration, size, args.calibration_count)
    inputs = fidelity_inputs(size, resizable=False)
    swapped = None
    if TARGETS[target].precision("int8").leaky_as_relu:  # the model the int8 export quantizes
        from models.contract import thumbnail_size

        from . import activations

        unchanged = model
        model, relus, floor = activations.swap(model, images, thumbnail_size(model) or 0, args.fidelity_target)
        if relus:
            from export.common import torch_reference

            with torch.no_grad():
                db = min(psnr(torch_reference(model, x), torch_reference(unchanged, x)) for _, x in inputs)
            swapped = {"layers": relus, "floor_db": floor, "vs_unchanged_db": round(db, 2)}
    if target == "onnx":
        from export.onnx import convert

        fp32 = work / f"{args.model}_fp32.onnx"
        convert(model, replace(spec, fixed_size=True), fp32, None)
        return Trials(fp32, images, inputs, method, args.threads), swapped
    from export.tflite import sensitivity_trials

    if args.threads:
        torch.set_num_threads(args.threads)
    return sensitivity_trials(model, images, inputs, method,
                              source=f"{args.model} ({args.checkpoint or 'shipped weights'})"), swapped


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        target, method, size = _usage(parser, args)
    except (ValueError, SidecarError) as err:
        parser.print_usage(sys.stderr)
        print(f"error: {err}", file=sys.stderr)
        return 2
    stem = Path(args.artifact).stem if args.artifact else f"{args.model}_{target}"
    out = Path(args.out) if args.out else Path("benchmark_results") / "sensitivity" / stem
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    from models import CheckpointError

    try:
        with tempfile.TemporaryDirectory(prefix="sensitivity-") as work:
            swapped = None
            if args.artifact:
                images = calibration_images(args.calibration, size, args.calibration_count)
                trials = Trials(Path(args.artifact), images, fidelity_inputs(size, resizable=False), method,
                                args.threads)
            else:
                trials, swapped = _model_trials(args, target, method, size, Path(work))
            try:
                report = analyze(trials, say)
                if swapped:
                    report["relu_swap"] = swapped
                if args.fidelity_target is not None:
                    if target == "tflite":
                        from quantize.sensitivity_tflite import choose_float_suffix

                        layers, reached, steps = choose_float_suffix(trials, args.fidelity_target, say)
                    else:
                        layers, reached, steps = choose_float_layers(trials, args.fidelity_target, report, say)
                    report["mixed_precision"] = {"target_db": args.fidelity_target, "float_layers": layers,
                                                 "fidelity_db": round(reached, 2), "steps": steps}
            finally:
                trials.close()
        paths = write_report(report, out)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # onnxruntime and torch raise many types; one line, no traceback
        print(f"error: sensitivity failed: {type(err).__name__}: {str(err).strip().splitlines()[0][:300]}",
              file=sys.stderr)
        return 1
    top = report["layers"][0]
    print(f"all layers int8: {report['all_int8_db']} dB; most sensitive: {top['layer']} ({top['only_int8_db']} dB "
          f"alone in int8; {top['all_but_it_int8_db']} dB with it in float)")
    if "mixed_precision" in report:
        mp = report["mixed_precision"]
        print(f"--fidelity-target {mp['target_db']:g}: {mp['fidelity_db']} dB with "
              f"--float-layers {','.join(mp['float_layers']) or '(none)'}")
    if "relu_swap" in report:
        print(relu_swap_text(report["relu_swap"]))
    print("report: " + ", ".join(str(p) for p in paths))
    return 0
