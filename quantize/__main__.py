"""python -m quantize: compress an existing float artifact, without the PyTorch model.

Examples:
  python -m quantize exported/dped_mobile_fp32.tflite --precision fp16
  python -m quantize exported/dped_mobile_fp32.tflite --precision dynamic-int8
  python -m quantize exported/dped_mobile_fp32.onnx --precision int8 --calibration photos/

Supported: .tflite -> fp16, dynamic-int8 (ai-edge-quantizer, weights only: no calibration);
           .onnx   -> fp16, int8 (QDQ static, calibrated).
Full-integer TFLite int8 needs the PyTorch graph (PT2E): use python -m export --target tflite --precision int8.
The result is checked against the source artifact on the held-out sample photos (gates as in python -m export);
exit 0 ok, 1 failed gate or conversion, 2 usage error.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

SUPPORTED = {".tflite": ("fp16", "dynamic-int8"), ".onnx": ("fp16", "int8")}


def quantize_artifact(src: Path, precision: str, out: Path | None = None, calibration: str | None = None,
                      calibration_count: int = 8) -> dict:
    """Write the compressed artifact and return {path, fidelity_psnr_db, gate_db, passed}."""
    from export import onnx as onnx_target
    from export import tflite as tflite_target
    from export.common import FIDELITY_GATES_DB, fidelity_inputs, fidelity_sample

    from .calibration import calibration_images

    out = out or src.with_name(src.name.replace("_fp32", f"_{precision}") if "_fp32" in src.name
                               else f"{src.stem}_{precision}{src.suffix}")
    if src.suffix == ".tflite":
        from .tflite import compress

        compress(src, out, precision)
        runner = tflite_target.run
        size = tflite_target.input_hw(src)
    else:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        from .onnx import quantize_static_qdq

        dims = onnx.load(str(src)).graph.input[0].type.tensor_type.shape.dim
        size = tuple(d.dim_value or 512 for d in dims[2:4])
        if precision == "fp16":
            onnx.save(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(out))
        else:
            quantize_static_qdq(src, out, calibration_images(calibration, size, calibration_count))
        runner = onnx_target.run
    gate = FIDELITY_GATES_DB[precision]
    samples = [fidelity_sample(name, runner(out, img), runner(src, img))
               for name, img in fidelity_inputs(size, resizable=False)]
    worst = min(s["psnr_db"] for s in samples)
    if worst < gate:
        rejected = Path(f"{out}.rejected")
        out.replace(rejected)
        out = rejected
    return {"path": str(out), "fidelity_psnr_db": worst, "gate_db": gate, "passed": worst >= gate,
            "size_bytes": out.stat().st_size}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quantize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact", help="a float .tflite or .onnx written by python -m export")
    parser.add_argument("--precision", required=True)
    parser.add_argument("--calibration", default=None, help="image folder (ONNX int8; default built-in photos)")
    parser.add_argument("--calibration-count", type=int, default=8)
    parser.add_argument("--out", default=None, help="output file (default: next to the input)")
    args = parser.parse_args(argv)
    src = Path(args.artifact)
    choices = SUPPORTED.get(src.suffix)
    if choices is None or args.precision not in choices:
        table = "; ".join(f"{k}: {', '.join(v)}" for k, v in SUPPORTED.items())
        parser.print_usage(sys.stderr)
        print(f"error: cannot make {args.precision!r} from {src.name}; supported: {table}", file=sys.stderr)
        return 2
    if not src.is_file():
        print(f"error: {src} not found", file=sys.stderr)
        return 2
    try:
        result = quantize_artifact(src, args.precision, Path(args.out) if args.out else None, args.calibration,
                                   args.calibration_count)
    except Exception as err:  # converters raise many types; one line, no traceback
        print(f"error: quantization failed: {type(err).__name__}: {str(err).strip().splitlines()[0][:300]}",
              file=sys.stderr)
        return 1
    print(f"{result['path']}  {result['size_bytes'] / 1e6:.2f} MB  fidelity {result['fidelity_psnr_db']:.1f} dB "
          f"vs the source (gate {result['gate_db']:.0f} dB)")
    if not result["passed"]:
        print("error: failed the fidelity gate; kept for inspection only", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
