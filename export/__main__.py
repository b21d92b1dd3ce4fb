"""python -m export: convert a model to a phone format and check it against PyTorch.

Examples:
  python -m export --target tflite                          # shipped dped_mobile -> exported/dped_mobile_fp32.tflite
  python -m export --target tflite --precision int8 --calibration photos/
  python -m export --target all --precision all             # every target and precision, then a summary table
  python -m export --target onnx --model dped --size 720x1280
  python -m export --target tflite --checkpoint runs/dped_mobile/best.pt --out my_exports
  python -m export --target tflite --android-assets             # and into android_demo's assets
  python -m export --target tflite --model intrinsic_decomposer  # two outputs: albedo, shading
  python -m export --target all --model mdie                     # the whole MDIE pipeline
  python -m export --target onnx --precision int8 --calibration-method minmax
  python -m export --target onnx --model dped --precision int8 --fidelity-target 40   # mixed precision, measured
  python -m export --target tflite --model dped --precision int8 --float-layers tail   # its tail in float
  python -m export --target tflite --model dped --precision int8 --fidelity-target 45   # float from where it must

Targets and precisions (gate: the worst PSNR against PyTorch fp32 an artifact must reach to be kept):
{table}
{gates}

Each artifact gets a sidecar JSON next to it (and the same JSON embedded in the file's metadata): see README,
"The sidecar".

Exit status: 0 exported and passed its fidelity gate; 1 failed (gate or conversion); 2 usage error.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from artifacts.cli import parse_size, run_main
from artifacts import TARGETS, resolve
from artifacts.runtimes.tensorrt import missing
from artifacts.targets import table as targets_table
from artifacts.timing import cost_text
from models import CheckpointError, keep_freed_memory, list_models, load_checkpoint

from .api import check_exportable, export_one, prepare_tensorrt
from .common import DEFAULT_SIZE, ExportError, ExportSpec, MissingBackend
from .coreml import IO_DTYPES

ANDROID_ASSETS = "android_demo/app/src/main/assets"


def build_parser() -> argparse.ArgumentParser:
    gates = {p.name: p.gate_db for t in TARGETS.values() for p in t.precisions.values()}
    p = argparse.ArgumentParser(prog="python -m export", description=__doc__.format(
        table=targets_table(), gates="  gates: " + ", ".join(f"{k} {v:.0f} dB" for k, v in gates.items())),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", required=True, help=f"one of: {', '.join([*TARGETS, 'all'])}")
    p.add_argument("--model", default="dped_mobile", help=f"one of: {', '.join(list_models())}")
    p.add_argument("--checkpoint", default=None, help="checkpoint from python -m train (default: shipped weights)")
    p.add_argument("--precision", default="fp32", help="see the table above, or 'all' (default: fp32)")
    p.add_argument("--size", default=None, help="HxW to trace at and fix (default 512x512, resizable at run time)")
    p.add_argument("--calibration", default=None, help="image folder for int8 calibration "
                                                       "(default: built-in training photos)")
    p.add_argument("--calibration-count", type=int, default=4,
                   help="calibration crops at the export size (default: 4)")
    p.add_argument("--gate-db", type=float, default=None,
                   help="fidelity gate in dB PSNR (default: the precision's gate listed above)")
    methods = "; ".join(f"{t.name} {q.name}: {', '.join(q.methods)} (default {q.methods[0]})"
                        for t in TARGETS.values() for q in t.precisions.values() if q.methods)
    p.add_argument("--calibration-method", default=None, help=f"how activation ranges are calibrated; {methods}")
    p.add_argument("--qat-steps", type=int, default=200,
                   help="--calibration-method qat (int8 TFLite): quantization-aware fine-tuning steps toward the "
                        "float model's own output, on 128x128 crops of the calibration photos (default 200)")
    p.add_argument("--float-layers", default="",
                   help="comma-separated layers kept in float in an int8 ONNX or TFLite (names as python -m "
                        "quantize sensitivity lists them: module paths, or module:Op; in TFLite everything "
                        "computed from them stays float too)")
    p.add_argument("--fidelity-target", type=float, default=None, metavar="DB",
                   help="int8: reach a fidelity of DB; the gate becomes DB. Without --weight-methods, first "
                        "tries the free recipes all in int8 (the plain file, smoothquant, cle, bias-correction: no "
                        "cost at run time) and takes the best that reaches DB; if none does, keeps layers in float "
                        "until DB (ONNX: the most sensitive first, measured one by one; "
                        "TFLite: the layer from which on the network runs in float, the fewest floated layers "
                        "first, then by bisection)")
    p.add_argument("--weight-methods", default="",
                   help="int8: comma list of weight-side methods applied to the float model first: cle "
                        "(cross-layer equalization), smoothquant (activation ranges evened into the weights), "
                        "adaround (learned rounding), bias-correction (of the int8 weights' mean error); see "
                        "README, 'Weight-side methods'")
    p.add_argument("--keep-leaky-relu", action="store_true",
                   help="int8 TFLite and ONNX: keep every LeakyReLU (default: those whose negative slope measures "
                        "as harmless on the calibration images become ReLUs, which the int8 conv runs for free; the "
                        "sidecar lists them under calibration.relu_layers)")
    p.add_argument("--coreml-io", default="float32", choices=IO_DTYPES,
                   help="Core ML input/output dtype (default float32; float16 skips the casts, fp16 precisions)")
    p.add_argument("--trt-prepare", action="store_true",
                   help="tensorrt without CUDA: write the ONNX, calibration tensors and trtexec command instead")
    p.add_argument("--out", default="exported", help="output folder (default: exported)")
    p.add_argument("--android-assets", nargs="?", const=ANDROID_ASSETS, default=None, metavar="DIR",
                   help=f"also copy the .tflite and its sidecar into the demo app's assets as model.tflite and "
                        f"model.json (default DIR: {ANDROID_ASSETS}); one tflite precision only")
    return p


def recipe_spec(args: argparse.Namespace, target: str, precision: str, size: tuple[int, int] | None) -> ExportSpec:
    return ExportSpec(model=args.model, checkpoint=args.checkpoint, target=target, precision=precision,
                      out=Path(args.out), gate_db=args.gate_db, calibration=args.calibration,
                      calibration_count=args.calibration_count, coreml_io=args.coreml_io,
                      calibration_method=args.calibration_method,
                      float_layers=tuple(x for x in args.float_layers.split(",") if x),
                      fidelity_target=args.fidelity_target, qat_steps=args.qat_steps,
                      weight_methods=tuple(x for x in args.weight_methods.split(",") if x),
                      leaky_as_relu=False if args.keep_leaky_relu else None,
                      **({"size": size, "fixed_size": True} if size else {}))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        pairs = resolve(args.target, args.precision)
        if args.model not in list_models():
            raise ValueError(f"unknown model {args.model!r}; choose from: {', '.join(list_models())}")
        size = parse_size(args.size) if args.size else None
        check_exportable(args.model, size or DEFAULT_SIZE)
        if args.calibration_count < 1:
            raise ValueError(f"--calibration-count must be a positive integer, got {args.calibration_count}")
        if args.qat_steps < 1:
            raise ValueError(f"--qat-steps must be a positive integer, got {args.qat_steps}")
        for parent in [Path(args.out), *Path(args.out).parents]:
            if parent.exists() and not parent.is_dir():
                raise ValueError(f"--out {args.out}: {parent} is a file, not a folder")
        if args.calibration and not Path(args.calibration).is_dir():
            raise ValueError(f"--calibration {args.calibration}: no such folder")
        for target, precision in pairs:  # the quantization options must fit every pair asked for
            if args.calibration_method or args.float_layers or args.fidelity_target is not None or \
                    args.weight_methods:
                recipe_spec(args, target.name, precision, size).check_recipe()
        if args.android_assets and [(t.name, p) for t, p in pairs] != [("tflite", pairs[0][1])]:
            raise ValueError("--android-assets copies one .tflite into the app: use --target tflite and one "
                             "--precision")
    except ValueError as err:
        parser.print_usage(sys.stderr)
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        if args.checkpoint:
            ckpt = load_checkpoint(args.checkpoint)
            if ckpt["model"] != args.model:
                raise CheckpointError(f"{args.checkpoint} holds weights for {ckpt['model']!r}, not {args.model!r} "
                                      f"(pass --model {ckpt['model']})")
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1

    keep_freed_memory()
    status, rows, start = 0, [], time.perf_counter()
    for target, precision in pairs:
        spec = recipe_spec(args, target.name, precision, size)
        t0 = time.perf_counter()
        if target.name == "tensorrt" and args.trt_prepare and missing():
            try:
                rec = prepare_tensorrt(spec)
            except (ExportError, CheckpointError, ValueError) as err:
                print(f"tensorrt {precision}: error: {err}", file=sys.stderr)
                status = 1
                continue
            print(f"tensorrt {precision}: prepared {', '.join(rec['files'].values())}\n  on a GPU machine: "
                  f"{rec['trtexec']}")
            rows.append([target.name, precision, "prepared for trtexec", "", "", f"{time.perf_counter() - t0:.1f}"])
            continue
        try:
            result = export_one(spec, progress=lambda line: print(line, file=sys.stderr, flush=True))
        except MissingBackend as err:
            if args.target != "all":  # asked for by name: a failure
                print(f"{target.name} {precision}: error: {err}", file=sys.stderr)
                status = 1
            rows.append([target.name, precision, f"skipped: {err}".split(". On this")[0][:90], "", "",
                         f"{time.perf_counter() - t0:.1f}"])
            continue
        except (ExportError, CheckpointError, ValueError) as err:
            print(f"{target.name} {precision}: error: {err}", file=sys.stderr)
            rows.append([target.name, precision, f"failed: {err}"[:70], "", "", f"{time.perf_counter() - t0:.1f}"])
            status = 1
            continue
        sc, fid = result.sidecar, result.sidecar.fidelity
        emulated = " (emulated)" if fid.mode == "emulated" else ""
        rows.append([target.name, precision, ("ok" if result.ok else "exported, failed fidelity gate") + emulated,
                     f"{result.size_bytes / 1e6:.2f}", f"{fid.psnr_db_min:.1f}", f"{sc.export_seconds:.1f}"])
        io = f"{sc.input.dtype} in, {sc.outputs[0].dtype} out"
        if sc.calibration and sc.calibration.float_layers:
            io += f"  float layers {','.join(sc.calibration.float_layers)}{cost_text(sc.calibration.float_cost)}"
        print(f"{target.name} {precision}: {sc.status}  {result.artifact}  {result.size_bytes / 1e6:.2f} MB  "
              f"{sc.macs_per_pixel / 1e3:.1f} K MACs/pixel  {io}  fidelity {fid.psnr_db_min:.1f} dB{emulated} "
              f"(gate {fid.gate_db:.0f} dB)  {sc.export_seconds:.1f} s")
        if result.ok and args.android_assets:
            copy_to_android(result.artifact, result.sidecar_path, Path(args.android_assets))
        if not result.ok:
            why = "; ".join(fid.program_problems) or f"{fid.psnr_db_min:.1f} dB < {fid.gate_db:.0f} dB"
            print(f"error: {target.name} {precision} failed its fidelity gate ({why}); kept for inspection as "
                  f"{result.artifact}", file=sys.stderr)
            status = 1
    if len(pairs) > 1:
        print_table(["target", "precision", "status", "size MB", "fidelity dB", "seconds"], rows)
        print(f"total {time.perf_counter() - start:.1f} s")
    return status


def copy_to_android(artifact: Path, sidecar: Path, assets: Path) -> None:
    """The demo app reads model.tflite and model.json from its assets (android_demo/README.md)."""
    assets.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(artifact, assets / "model.tflite")
    shutil.copyfile(sidecar, assets / "model.json")
    print(f"copied into the Android app: {assets / 'model.tflite'} and {assets / 'model.json'}")


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
    sys.exit(run_main(main))
