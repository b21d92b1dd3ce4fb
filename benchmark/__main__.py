"""python -m benchmark: size, latency, memory and quality of every artifact on every runtime this machine has.

Examples:
  python -m benchmark                  # dped_mobile vs dped, fp32 and int8, 720x1280, the runtimes this machine has
  python -m benchmark --models dped_mobile,dped,mdie,intrinsic_decomposer_mobile --targets tflite,onnx,coreml,tensorrt \
      --precisions fp32,fp16,int8 --threads 1,2 --size 512x512      # the whole matrix
  python -m benchmark --models mdie,intrinsic_decomposer_mobile --targets tflite,onnx
  python -m benchmark --models dped_mobile --targets tflite --precisions all --threads 4
  python -m benchmark --data ~/datasets/dped --phone iphone --size 720x1280 --runs 10
  python -m benchmark --targets tflite --adb --benchmark-binary android_aarch64_benchmark_model
  python -m benchmark --profile --models dped_mobile --targets tflite,onnx --size 720x1280 --threads 2
  python -m benchmark --precisions fp32,int8 --recipes minmax,cle,bias-correction,adaround   # int8 recipes side by side
  python -m benchmark --models dped,mdie --precisions fp32,int8 --recipes fidelity-45   # float layers for 45 dB, timed

Artifacts are taken from --export-dir (exported/) or exported there first. Each runtime is timed in a fresh
child process (warm-up, then --runs timed runs: median and p90; peak RSS of that process). Quality: PSNR/SSIM
against the DSLR side of the evaluation pairs, the drop against PyTorch fp32, and the fidelity PSNR of each
artifact's output against PyTorch's. Roofline: each row's GMAC/s, its share of this machine's peak (a 3x3 conv
64->64 probe exported for the same target and precision, timed at the same size and threads) and of its roofline
floor (per conv, the longer of its MACs at that peak and its activation traffic at the measured copy bandwidth).
Each --recipes entry adds an int8 row per calibrated target (a calibration method, weight-side methods and a
fidelity-DB target, which keeps the layers python -m export --fidelity-target chooses in float, joined by '+'),
exported to <export-dir>/recipes/<recipe>/; the default recipe's row names its method.
Results: a table here and results.json/.csv/.md and latency_vs_psnr.png in --out.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from artifacts import TARGETS
from artifacts.cli import parse_size, run_main
from export.api import check_exportable
from models import list_models

from . import report
from .api import BenchConfig, Recipe, host, run_benchmark


def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = BenchConfig()
    p.add_argument("--models", default=",".join(defaults.models))
    p.add_argument("--targets", default=",".join(defaults.targets),
                   help=f"comma list of {', '.join(TARGETS)} (default: those whose runtime runs here)")
    p.add_argument("--precisions", default=",".join(defaults.precisions), help="comma list, or 'all'")
    p.add_argument("--size", default="x".join(map(str, defaults.size)),
                   help="latency input HxW (default 720x1280, the HD size of DPED and PIRM)")
    p.add_argument("--threads", default=",".join(map(str, defaults.threads)))
    p.add_argument("--runs", type=int, default=defaults.runs)
    p.add_argument("--data", default=None, help="paired folder or DPED layout (default: built-in validation photos)")
    p.add_argument("--phone", default=None, help="phone of the DPED layout")
    p.add_argument("--full-res", default="3000x4000",
                   help="HxW of the tiled full-resolution row (dped_mobile, LiteRT fp32); 'none' to skip")
    p.add_argument("--export-dir", default="exported")
    p.add_argument("--out", default="benchmark_results")
    p.add_argument("--adb", nargs="?", const="", default=None, metavar="SERIAL",
                   help="also time the .tflite artifacts on an Android phone (first device, or SERIAL)")
    p.add_argument("--benchmark-binary", default=None, help="LiteRT's benchmark_model built for the phone")
    p.add_argument("--delegates", default="cpu,gpu,nnapi", help="phone delegates (default cpu,gpu,nnapi)")
    p.add_argument("--recipes", default="",
                   help="extra int8 recipes, each its own row: a comma list of a calibration method and/or weight "
                        "methods and a fidelity-DB target joined by '+' (minmax, percentile+cle, bias-correction, "
                        "adaround, fidelity-45)")
    p.add_argument("--no-roofline", action="store_true",
                   help="skip the roofline columns (GMAC/s, %% of this machine's peak for the row's runtime, "
                        "precision and threads, %% of the roofline floor) and the probes that measure the peak")
    p.add_argument("--profile", action="store_true",
                   help="instead: per-layer profiles (ONNX Runtime's profiler; LiteRT: each conv alone, fp32) against "
                        "this machine's 1x1-conv peak, at --size and the largest --threads; writes profile.md, "
                        ".json and .png in --out")
    args = p.parse_args(argv)
    try:
        models, targets = _list(args.models), _list(args.targets)
        for m in models:
            if m not in list_models():
                raise ValueError(f"unknown model {m!r}; choose from: {', '.join(list_models())}")
            check_exportable(m, parse_size(args.size))
        for t in targets:
            if t not in TARGETS:
                raise ValueError(f"unknown target {t!r}; choose from: {', '.join(TARGETS)}")
        threads = _positive_ints(args.threads, "--threads")
        recipes = _list(args.recipes)
        for recipe in recipes:
            Recipe.parse(recipe)
        if args.runs < 1:
            raise ValueError(f"--runs must be a positive integer, got {args.runs}")
        for folder in (args.out, args.export_dir):
            for parent in [Path(folder), *Path(folder).parents]:
                if parent.exists() and not parent.is_dir():
                    raise ValueError(f"{folder}: {parent} is a file, not a folder")
        cfg = BenchConfig(models=models, targets=targets, precisions=_list(args.precisions),
                          size=parse_size(args.size), threads=threads, runs=args.runs, data=args.data,
                          phone=args.phone, export_dir=Path(args.export_dir), out=Path(args.out),
                          full_res=None if args.full_res == "none" else parse_size(args.full_res),
                          roofline=not args.no_roofline, recipes=recipes)
    except ValueError as err:
        p.print_usage(sys.stderr)
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.profile:
        from .api import run_profiles

        for path in run_profiles(cfg, log=lambda m: print(m, file=sys.stderr)):
            print(f"wrote {path}")
        return 0
    serial = None
    if args.adb is not None:
        from .adb import DELEGATES, AdbError, check_setup

        delegates = _list(args.delegates)
        try:
            if any(d not in DELEGATES for d in delegates):
                raise AdbError(f"unknown delegate in {args.delegates!r}; choose from: {', '.join(DELEGATES)}")
            serial = check_setup(args.adb or None, args.benchmark_binary)
        except AdbError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    start = time.perf_counter()
    try:
        log = lambda m: print(m, file=sys.stderr)  # noqa: E731
        rows = run_benchmark(cfg, log=log)
        if serial:
            from .api import phone_rows

            rows += phone_rows(rows, cfg, serial, args.benchmark_binary, delegates, log)
    except (ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(report.table(rows))
    extra = {"host": host(), "seconds": round(time.perf_counter() - start, 1)}
    for ratio in _ratios(rows):
        print(ratio)
        extra[ratio.split(":")[0]] = ratio.split(":", 1)[1].strip()
    for path in report.write(rows, cfg.out, extra):
        print(f"wrote {path}")
    return 0


def _positive_ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(t) for t in _list(text)]
    except ValueError:
        raise ValueError(f"{flag} takes a comma list of positive integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"{flag} takes a comma list of positive integers, got {text!r}")
    return values


# DPED+'s speed targets on LiteRT (what the mobile network is for), printed beside the measured ratios
LITERT_TARGETS = {"int8 vs fp32": 2.0, "fp32 vs dped fp32": 2.3, "int8 vs dped fp32": 6.0}


def _ratios(rows: list[dict]) -> list[str]:
    def ms(model, target, precision, threads):
        return next((r["latency_ms_median"] for r in rows if (r["model"], r["target"], r["precision"],
                     r["threads"]) == (model, target, precision, threads) and r["latency_ms_median"]), None)

    def faster(ratio: float) -> str:  # a ratio under 1 said as what it is
        return f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower"

    def goal(target: str, key: str) -> str:
        return f" (target {LITERT_TARGETS[key]:g}x faster)" if target == "tflite" and key in LITERT_TARGETS else ""

    # the full-resolution row has another input size; extra int8 recipes are compared in the table, not here
    rows = [r for r in rows if r["runtime"] != "litert-tiled" and not r.get("extra_recipe")]
    lines = []
    for r in rows:
        if r["target"] == "tflite" and r["precision"] == "int8" and r["latency_ms_median"] and "/" not in r["model"]:
            fp32 = ms(r["model"], "tflite", "fp32", r["threads"])
            if fp32:
                lines.append(f"LiteRT int8 vs fp32 ({r['model']}, {r['threads']} thr): "
                             f"{faster(fp32 / r['latency_ms_median'])}"
                             f"{goal('tflite', 'int8 vs fp32') if r['model'].startswith('dped_mobile') else ''}")
    for r in rows:  # an image-adaptive model against its own local network alone
        if r["model"].endswith("/no-branch") and r.get("branch_cost_pct") is not None:
            lines.append(f"{r['model'].split('/')[0]}'s global branch ({r['target']} {r['precision']}, "
                         f"{r['threads']} thr): {r['branch_cost_pct']:+.1f}% latency, timed in pairs "
                         f"(±{r['branch_cost_spread_pct']:.1f}%; target at most 5%)")
    for r in rows:  # every DPED+ variant (dped_mobile, dped_mobile_s) against DPED
        if r["model"].startswith("dped_mobile") and "/" not in r["model"] and r["latency_ms_median"]:
            same = ms("dped", r["target"], r["precision"], r["threads"])
            if same:
                key = f"{r['precision']} vs dped {r['precision']}"
                lines.append(f"{r['model']} vs dped ({r['target']} {r['precision']}, {r['threads']} thr): "
                             f"{faster(same / r['latency_ms_median'])}{goal(r['target'], key)}")
            dped_fp32 = ms("dped", r["target"], "fp32", r["threads"])
            if r["precision"] != "fp32" and dped_fp32:
                lines.append(f"{r['model']} {r['precision']} vs dped fp32 ({r['target']}, {r['threads']} thr): "
                             f"{faster(dped_fp32 / r['latency_ms_median'])}"
                             f"{goal(r['target'], r['precision'] + ' vs dped fp32')}")
    return lines


if __name__ == "__main__":
    sys.exit(run_main(main))
