"""python -m benchmark.style: what MPSE's phase 2 (style toward a reference) does, measured.

For each validation photo under the night and the unseen degradation (train/evaluate.py), PSNR/SSIM against the
clean photo of:
  input | phase 1 (the shipped dped_mobile) | levels | phase 1 + 2 toward the scene's own clean photo (the best a
  reference can be) | phase 1 + 2 toward the reference the shipped recommender picks among the other scenes'
  clean photos (a reference of another scene, as a user would have).
Then the carry to full resolution: phase 2 optimised at --size, carried to 2 x --size by three methods, against
phase 2 optimised at 2 x --size directly (PSNR): the local affine transform (models/style.py's carry), bilinear
upsampling of the result, and the input plus the upsampled change. Seconds per step at three working sizes.

Examples:
  python -m benchmark.style                          # defaults of python -m enhance (--style-steps, --style-size)
  python -m benchmark.style --steps 30 --size 96     # a quicker look
Results: a table here and style.json/style.md in --out (benchmark_results/ by default).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from artifacts.cli import run_main
from artifacts.io import write_atomic

DEGRADATIONS = ("night", "unseen")


def _score(x: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    from train.metrics import psnr_ssim

    t = lambda a: torch.from_numpy(np.array(a, dtype=np.float32)).permute(2, 0, 1)[None]  # noqa: E731
    return psnr_ssim(t(x), t(truth))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1 / max(np.mean((a.astype(np.float64) - b) ** 2), 1e-12)))


def quality(steps: int, size: int, photos: tuple[str, ...] = ("coffee", "rocket"),
            degradations: tuple[str, ...] = DEGRADATIONS) -> list[dict]:
    from models.style import StyleConfig, style_photo
    from models import create_model, fold_batchnorm
    from models.recommend import describe_references, load_recommender, rank_references
    from photos.baselines import levels
    from photos.samples import SPLITS, sample_photo
    from train.evaluate import night_degradation, unseen_degradation

    degrade = {"night": night_degradation, "unseen": unseen_degradation}
    net = fold_batchnorm(create_model("dped_mobile", pretrained=True))
    recommender = load_recommender()
    config = StyleConfig(steps=steps, size=size)
    bank = {n: np.asarray(sample_photo(n)) for n in SPLITS["train+"] + SPLITS["val"]}
    described = describe_references(recommender, bank)   # once: the ranking of every photo reuses them
    rows = []
    for name in photos:
        truth = np.asarray(sample_photo(name))
        others = {n: ref for n, ref in bank.items() if n != name}
        for deg in degradations:
            photo = degrade[deg](truth)
            with torch.no_grad():
                x = torch.from_numpy(photo).permute(2, 0, 1)[None]
                phase1 = net(x)[0].clamp(0, 1).permute(1, 2, 0).numpy()
            chosen = rank_references(recommender, phase1, {n: described[n] for n in others})[0][0]
            row = {"photo": name, "degradation": deg, "reference_chosen": chosen}
            for key, image in (("input", photo), ("phase1", phase1), ("levels", levels(photo)),
                               ("phase2_same_scene", style_photo(phase1, truth, recommender.trunk, config).image),
                               ("phase2_recommended", style_photo(phase1, others[chosen], recommender.trunk,
                                                                  config).image)):
                row[key] = [round(v, 4) for v in _score(image, truth)]
            rows.append(row)
    return rows


def carry_check(steps: int, size: int) -> dict:
    """Phase 2 at ``size`` carried to 2 x size, against phase 2 run at 2 x size."""
    from photos.regions import joint_regions
    from models.style import StyleConfig, resize_photo, carry, stylize, working_size
    from models.vgg import VGGTrunk
    from photos.samples import sample_photo
    from train.evaluate import night_degradation

    trunk = VGGTrunk()
    photo, ref = night_degradation(np.asarray(sample_photo("coffee"))), np.asarray(sample_photo("chelsea"))
    big = resize_photo(photo, working_size(photo.shape, 2 * size))
    small = resize_photo(photo, working_size(photo.shape, size))
    ref_big = resize_photo(ref, working_size(ref.shape, 2 * size))
    ref_small = resize_photo(ref, working_size(ref.shape, size))
    la, lb = joint_regions(big, ref_big, 3)
    direct = stylize(big, ref_big, la, lb, 3, trunk, StyleConfig(steps=steps, size=2 * size)).output
    sa, sb = joint_regions(small, ref_small, 3)
    low = stylize(small, ref_small, sa, sb, 3, trunk, StyleConfig(steps=steps, size=size)).output
    up = lambda a: resize_photo(a, big.shape[:2])  # noqa: E731
    return {"size": size, "full_size": 2 * size, "psnr_vs_direct": {
        "local_affine (carry)": round(_psnr(carry(big, small, low), direct), 2),
        "bilinear upsampling": round(_psnr(up(low), direct), 2),
        "input + upsampled change": round(_psnr(np.clip(big + up(low - small), 0, 1), direct), 2),
        "input unchanged": round(_psnr(big, direct), 2)}}


def step_seconds(sizes: tuple[int, ...], steps: int = 5) -> dict[int, float]:
    from photos.regions import joint_regions
    from models.style import StyleConfig, resize_photo, stylize, working_size
    from models.vgg import VGGTrunk
    from photos.samples import sample_photo

    trunk, out = VGGTrunk(), {}
    for size in sizes:
        a = resize_photo(np.asarray(sample_photo("coffee")), working_size((400, 600), size))
        b = resize_photo(np.asarray(sample_photo("chelsea")), working_size((300, 451), size))
        la, lb = joint_regions(a, b, 3)
        stylize(a, b, la, lb, 3, trunk, StyleConfig(steps=1, size=size))  # warm-up
        t0 = time.perf_counter()
        stylize(a, b, la, lb, 3, trunk, StyleConfig(steps=steps, size=size))
        out[size] = round((time.perf_counter() - t0) / steps, 3)
    return out


def markdown(result: dict) -> str:
    cols = ("input", "phase1", "levels", "phase2_same_scene", "phase2_recommended")
    lines = ["| photo | degradation | " + " | ".join(cols) + " | recommended reference |",
             "|---|---|" + "---:|" * len(cols) + "---|"]
    for r in result["quality"]:
        cells = " | ".join(f"{r[c][0]:.2f} / {r[c][1]:.3f}" for c in cols)
        lines.append(f"| {r['photo']} | {r['degradation']} | {cells} | {r['reference_chosen']} |")
    c = result["carry"]
    lines += ["", f"Carry from {c['size']} px to {c['full_size']} px, PSNR against phase 2 run at {c['full_size']} px:",
              ""] + [f"- {k}: {v:.2f} dB" for k, v in c["psnr_vs_direct"].items()]
    lines += ["", "Seconds per step: " + ", ".join(f"{k} px {v:.3f} s" for k, v in result["seconds_per_step"].items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from models.style import StyleConfig

    p = argparse.ArgumentParser(prog="python -m benchmark.style", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=StyleConfig.steps)
    p.add_argument("--size", type=int, default=StyleConfig.size)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default="benchmark_results")
    args = p.parse_args(argv)
    if args.steps < 1 or args.size < 32 or (args.threads is not None and args.threads < 1):
        p.print_usage(sys.stderr)
        print("error: --steps and --threads must be positive and --size at least 32", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    result = {"steps": args.steps, "size": args.size, "threads": torch.get_num_threads(),
              "quality": quality(args.steps, args.size), "carry": carry_check(args.steps, args.size),
              "seconds_per_step": step_seconds((128, 192, 256))}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "style.json", json.dumps(result, indent=2).encode())
    text = markdown(result)
    write_atomic(out / "style.md", text.encode())
    print(text + f"({result['seconds']} s; {out / 'style.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
