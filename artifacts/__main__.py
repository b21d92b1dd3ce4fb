"""python -m artifacts: what an exported file says about itself, checked against what its runtime reports.

Examples:
  python -m artifacts exported/dped_mobile_int8.tflite          # the contract, and whether it holds
  python -m artifacts exported/mdie_fp32.onnx --json            # the embedded sidecar as JSON

Reads the sidecar embedded in the file (TFLite metadata, ONNX metadata property, Core ML user-defined metadata;
TensorRT engines carry none: the sidecar next to them is read instead), compares it with the sidecar next to the
file when there is one, and compares the tensors it states with what the runtime reports (LiteRT, ONNX Runtime,
coremltools' spec). Exit status: 0 the file's contract holds; 1 it does not (each difference on one line);
2 usage error (not an artifact, no such file, no contract found).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

from .cli import run_main
from .runtimes import runtime_for
from .sidecar import METADATA_KEY, Sidecar, SidecarError
from .targets import target_of


def contract(path: Path) -> tuple[Sidecar, list[str]]:
    """(the file's sidecar, problems): disagreements between the embedded copy, the sidecar file and the runtime."""
    target, mod = target_of(path), runtime_for(path)
    next_to = target.sidecar_path(path)
    beside = Sidecar.read(next_to) if next_to.exists() else None
    text = mod.embedded(path).get(METADATA_KEY)
    embedded = Sidecar.from_json(text, f"{path.name} (embedded)") if text else None
    if embedded is None and beside is None:
        raise SidecarError(f"{path.name} carries no dslr-mobile contract and has no sidecar next to it")
    sidecar = embedded or beside
    problems = []
    if embedded and beside and embedded != beside:
        fields = [k for k, v in asdict(embedded).items() if asdict(beside)[k] != v]
        problems.append(f"the sidecar {next_to.name} differs from the embedded one in: {', '.join(fields)}")
    if target.name != "tensorrt" or not mod.unavailable():
        inputs = [sidecar.input, *([sidecar.thumbnail] if sidecar.thumbnail else [])]
        kwargs = {"exported_shapes": {t.name: t.shape for t in [*inputs, *sidecar.outputs]}} \
            if target.name == "onnx" else {}
        found = mod.describe(path, **kwargs)
        if len(found["inputs"]) != len(inputs):
            problems.append(f"the contract states inputs {', '.join(t.name for t in inputs)}; {mod.NAME} reports "
                            f"{', '.join(t['name'] for t in found['inputs'])}")
        for stated, reported in zip([*sorted(inputs, key=lambda t: t.name), *sidecar.outputs],
                                    [*found["inputs"], *found["outputs"]]):
            said = asdict(stated)
            for key, value in reported.items():
                if value is not None and said[key] != value:
                    problems.append(f"{stated.name}.{key}: the contract says {said[key]}, {mod.NAME} reports {value}")
    return sidecar, problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m artifacts", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifact", help="an exported .tflite, .onnx, .mlpackage or .engine")
    p.add_argument("--json", action="store_true", help="print the contract as JSON")
    args = p.parse_args(argv)
    path = Path(args.artifact)
    try:
        target_of(path)
        if not path.exists():
            raise ValueError(f"{path}: no such artifact")
        sidecar, problems = contract(path)
    except (ValueError, SidecarError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(sidecar.to_json())
    else:
        print(f"{path.name}: {sidecar.model} {sidecar.target} {sidecar.precision} (run by {sidecar.runtime}), "
              f"status {sidecar.status}, fidelity {sidecar.fidelity.psnr_db_min if sidecar.fidelity else '-'} dB")
        thumb = [("input", sidecar.thumbnail)] if sidecar.thumbnail else []
        for role, t in [("input", sidecar.input), *thumb, *(("output", o) for o in sidecar.outputs)]:
            quant = f" scale {t.quantization.scale:.6g} zero point {t.quantization.zero_point}" if t.quantization else ""
            print(f"  {role:<6} {t.name:<9} {t.layout} {t.shape} dynamic {t.dynamic_dims} {t.dtype}{quant} "
                  f"range {t.range}")
        print(f"  tiles of {sidecar.tile} px, halo {sidecar.halo} ({'exact' if sidecar.halo_exact else 'approximate'}),"
              f" H and W multiples of {sidecar.size_multiple}")
        if sidecar.thumbnail:
            print(f"  thumbnail: {sidecar.thumbnail_method}")
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(run_main(main))
