"""python -m quantize sensitivity: which conv layers int8 hurts, one at a time, through onnxruntime's quantizer.

Examples:
  python -m export --target onnx --model dped                      # the float file it starts from
  python -m quantize sensitivity exported/dped_fp32.onnx           # table, JSON and chart in benchmark_results/
  python -m quantize sensitivity exported/dped_fp32.onnx --size 256x256 --calibration-method minmax
  python -m quantize sensitivity exported/dped_fp32.onnx --fidelity-target 45   # + which layers to keep in float

For each conv layer: the fidelity (worst PSNR against the float file on the held-out photos) with only that layer
in int8, and with every layer but it in int8; the layer's activation range and its weights' per-channel range.
Most sensitive first. With --fidelity-target, it then keeps layers in float, the most sensitive first, until the
target is met, and prints the --float-layers to pass to python -m quantize (python -m export --fidelity-target
does the same search by itself).

Per-layer float fallback exists for ONNX only: litert-torch's PT2E quantizer (0.10) cannot leave one module in
float (set_module_name(name, None) is "not supported yet").

Exit status: 0 report written, 1 failed, 2 usage error, 130 interrupted.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from artifacts import SidecarError, target_of
from artifacts.cli import parse_size
from artifacts.fidelity import fidelity_inputs
from artifacts.sidecar import sidecar_for

from .calibration import calibration_images
from .sensitivity import Trials, analyze, choose_float_layers, write_report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m quantize sensitivity", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifact", help="an fp32 .onnx written by python -m export (its sidecar next to it)")
    p.add_argument("--size", default=None, help="HxW of the calibration crops and the scored photos (default: the "
                                                "artifact's export size)")
    p.add_argument("--calibration", default=None, help="image folder (default: built-in training photos)")
    p.add_argument("--calibration-count", type=int, default=4)
    p.add_argument("--calibration-method", default="percentile", choices=("percentile", "minmax"))
    p.add_argument("--fidelity-target", type=float, default=None,
                   help="also choose the layers to keep in float to reach this fidelity (dB)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: all cores)")
    p.add_argument("--out", default=None, help="report folder (default: benchmark_results/sensitivity/<file stem>)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    src = Path(args.artifact)
    try:
        if target_of(src).name != "onnx":
            raise ValueError(f"{src.name}: per-layer sensitivity runs on an fp32 .onnx (litert-torch's PT2E cannot "
                             f"leave one layer in float); export one with python -m export --target onnx")
        if not src.is_file():
            raise ValueError(f"{src}: no such artifact")
        source = sidecar_for(src)
        if source.precision != "fp32":
            raise ValueError(f"{src.name} is {source.precision}: sensitivity starts from the fp32 file")
        if args.calibration_count < 1:
            raise ValueError(f"--calibration-count must be at least 1, got {args.calibration_count}")
        if args.calibration and not Path(args.calibration).is_dir():
            raise ValueError(f"--calibration {args.calibration}: no such folder")
        size = parse_size(args.size) if args.size else tuple(source.input.hw)
        if size[0] % source.size_multiple or size[1] % source.size_multiple:
            raise ValueError(f"--size {args.size}: {source.model} needs multiples of {source.size_multiple}")
    except (ValueError, SidecarError) as err:
        parser.print_usage(sys.stderr)
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path("benchmark_results") / "sensitivity" / src.stem
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    try:
        images = calibration_images(args.calibration, size, args.calibration_count)
        trials = Trials(src, images, fidelity_inputs(size, resizable=False), args.calibration_method, args.threads)
        try:
            report = analyze(trials, say)
            if args.fidelity_target is not None:
                layers, reached, steps = choose_float_layers(trials, args.fidelity_target, report, say)
                report["mixed_precision"] = {"target_db": args.fidelity_target, "float_layers": layers,
                                             "fidelity_db": round(reached, 2), "steps": steps}
        finally:
            trials.close()
        paths = write_report(report, out)
    except Exception as err:  # onnxruntime raises many types; one line, no traceback
        print(f"error: sensitivity failed: {type(err).__name__}: {str(err).strip().splitlines()[0][:300]}",
              file=sys.stderr)
        return 1
    top = report["layers"][0]
    print(f"all layers int8: {report['all_int8_db']} dB; most sensitive: {top['layer']} ({top['only_int8_db']} dB "
          f"alone in int8; {top['all_but_it_int8_db']} dB with it in float)")
    if "mixed_precision" in report:
        mp = report["mixed_precision"]
        print(f"--fidelity-target {mp['target_db']:g}: {mp['fidelity_db']} dB with {len(mp['float_layers'])} "
              f"layer(s) in float: --float-layers {','.join(mp['float_layers']) or '(none)'}")
    print("report: " + ", ".join(str(p) for p in paths))
    return 0
