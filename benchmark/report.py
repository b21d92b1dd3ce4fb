"""Results: terminal table, results.json / .csv / .md and a latency-vs-PSNR plot."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from artifacts.io import png_bytes, write_atomic

COLUMNS = [("model", "model"), ("target", "target"), ("precision", "prec"), ("recipe", "recipe"),
           ("float_layers", "float"), ("weight_methods", "weights"), ("runtime", "runtime"),
           ("threads", "thr"), ("status", "status"), ("size_mb", "MB"), ("latency_ms_median", "ms med"),
           ("latency_ms_p90", "ms p90"), ("megapixels_per_s", "MP/s"), ("peak_rss_mb", "peak MB"),
           ("gmacs_per_s", "GMAC/s"), ("peak_pct", "% peak"), ("floor_pct", "% floor"), ("psnr_db", "PSNR"),
           ("ssim", "SSIM"), ("psnr_drop_db", "drop dB"), ("fidelity_psnr_db", "fidelity"), ("pirm_score", "PIRM")]


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, list):
        return ",".join(map(str, v)) or "(none)"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def table(rows: list[dict]) -> str:
    head = [h for _, h in COLUMNS]
    body = [[_fmt(r.get(k))[:60] for k, _ in COLUMNS] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in [head, ["-" * w for w in widths], *body]]
    return "\n".join(lines)


def write(rows: list[dict], out: Path, extra: dict) -> list[Path]:
    """results.json, .csv, .md and the plot, each written whole to a temporary name and then renamed."""
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "results.json", json.dumps(rows, indent=2).encode())
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out / "results.csv", text.getvalue().encode())
    md = ["| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    md += ["| " + " | ".join(_fmt(r.get(k)) for k, _ in COLUMNS) + " |" for r in rows]
    notes = [f"- {k}: {v}" for k, v in extra.items()]
    write_atomic(out / "results.md", "\n".join(["# Benchmark", "", *md, "", *notes, ""]).encode())
    paths = [out / "results.json", out / "results.csv", out / "results.md"]
    plot = _plot(rows, out / "latency_vs_psnr.png")
    return paths + ([plot] if plot else [])


def _plot(rows: list[dict], path: Path) -> Path | None:
    points = [r for r in rows if r.get("latency_ms_median") and r.get("psnr_db")]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6))
    for r in points:
        ax.scatter(r["latency_ms_median"], r["psnr_db"])
        label = f"{r['model']} {r['target']} {r['precision']}" + (f" {r['recipe']}" if r.get("extra_recipe") else "")
        ax.annotate(f"{label} {r['runtime']} x{r['threads']}",
                    (r["latency_ms_median"], r["psnr_db"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel(f"latency, ms (median, {points[0]['input_hw']})")
    ax.set_ylabel("PSNR vs ground truth, dB")
    ax.set_title("dslr-mobile: speed vs quality per artifact and runtime")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    write_atomic(path, png_bytes(fig, dpi=120))
    return path

