"""python -m quantize: compress an exported float artifact without the PyTorch model.

Examples:
  python -m quantize exported/dped_mobile_fp32.tflite --precision fp16
  python -m quantize exported/dped_mobile_fp32.tflite --precision dynamic-int8
  python -m quantize exported/dped_mobile_fp32.onnx --precision int8 --calibration photos/
  python -m quantize exported/dped_fp32.onnx --precision int8 --calibration-method minmax
  python -m quantize exported/dped_fp32.onnx --precision int8 --float-layers stem.conv,head.conv
  python -m quantize sensitivity exported/dped_fp32.onnx       # per-layer int8 sensitivity: table, JSON, chart

What each target can make from its fp32 artifact:
{table}
Full-integer TFLite int8 needs the PyTorch graph (PT2E): python -m export --target tflite --precision int8.

The result is gated against the source artifact on the held-out sample photos (the gates of python -m export)
and gets its own sidecar (and the same JSON embedded), so python -m enhance --artifact and python -m benchmark
take it like an exported one. The source's sidecar must be next to it. An existing output is not overwritten
unless --force is given; the source never is. Exit 0 ok, 1 failed gate or conversion, 2 usage error (a quantized
source, a wrong --out suffix, an existing output...), 130 interrupted.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from artifacts.cli import run_main
from artifacts import TARGETS, SidecarError, Target, target_of
from artifacts.sidecar import sidecar_for
from artifacts.targets import check_recipe
from artifacts.timing import cost_text

from .api import QuantizeError, check_request, quantize_artifact


def supported(target: Target) -> tuple[str, ...]:
    return tuple(p.name for p in target.precisions.values() if p.from_float)


def build_parser() -> argparse.ArgumentParser:
    table = "\n".join(f"  {t.suffix:<11} -> {', '.join(supported(t))}" for t in TARGETS.values() if supported(t))
    p = argparse.ArgumentParser(prog="python -m quantize", description=__doc__.format(table=table),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifact", help="an fp32 .tflite or .onnx written by python -m export")
    p.add_argument("--precision", required=True)
    p.add_argument("--calibration", default=None, help="image folder (ONNX int8; default built-in photos)")
    p.add_argument("--calibration-count", type=int, default=8)
    p.add_argument("--calibration-method", default=None,
                   help="activation ranges; " + "; ".join(f"{t.suffix} int8: {', '.join(q.methods)} (default "
                                                          f"{q.methods[0]})" for t in TARGETS.values()
                                                          for q in t.precisions.values() if q.methods and q.from_float))
    p.add_argument("--float-layers", default="",
                   help="comma-separated layers to keep in float (names as python -m quantize sensitivity lists "
                        "them)")
    p.add_argument("--out", default=None, help="output file (default: <model>_<precision><suffix> next to the input)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sensitivity"]:
        from .sensitivity_cli import main as sensitivity_main

        return sensitivity_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    src = Path(args.artifact)
    float_layers = tuple(x for x in args.float_layers.split(",") if x)
    try:
        target = target_of(src)
        if args.precision not in supported(target):
            listing = "; ".join(f"{t.suffix}: {', '.join(supported(t))}" for t in TARGETS.values() if supported(t))
            raise ValueError(f"cannot make {args.precision!r} from {src.name}; supported: {listing}")
        if args.calibration_count < 1:
            raise ValueError(f"--calibration-count must be at least 1, got {args.calibration_count}")
        if not src.exists():
            raise ValueError(f"{src}: no such artifact")
        if args.calibration and not Path(args.calibration).is_dir():
            raise ValueError(f"--calibration {args.calibration}: no such folder")
        check_recipe(target, args.precision, args.calibration_method, bool(float_layers))
        source = sidecar_for(src)
        out = Path(args.out) if args.out else src.with_name(f"{source.model}_{args.precision}{target.suffix}")
        check_request(src, source, out, args.force)
    except (ValueError, SidecarError) as err:  # QuantizeError included
        parser.print_usage(sys.stderr)
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        result = quantize_artifact(src, source, args.precision, out, args.calibration, args.calibration_count,
                                   force=args.force, method=args.calibration_method, float_layers=float_layers)
    except QuantizeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # converters raise many types; one line, no traceback
        print(f"error: quantization failed: {type(err).__name__}: {str(err).strip().splitlines()[0][:300]}",
              file=sys.stderr)
        return 1
    fid = result.sidecar.fidelity
    calib = result.sidecar.calibration
    floats = f"  float layers {','.join(calib.float_layers)}{cost_text(calib.float_cost)}" \
        if calib and calib.float_layers else ""
    print(f"{result.artifact}  {result.size_bytes / 1e6:.2f} MB{floats}  fidelity {fid.psnr_db_min:.1f} dB vs the "
          f"source (gate {fid.gate_db:.0f} dB)  sidecar {result.sidecar_path.name}")
    if not result.ok:
        print("error: failed the fidelity gate; kept for inspection only", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
