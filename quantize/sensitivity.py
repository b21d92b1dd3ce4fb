"""Per-layer quantization sensitivity and mixed precision for int8 ONNX (onnxruntime.quantization, QDQ).

Each trial quantizes the float ONNX file with onnxruntime's own quantizer, as ``python -m export --precision int8``
does, with some layers left in float, and runs it in ONNX Runtime on the held-out photos. Its score is the
worst PSNR of the outputs against the float file's (the fidelity the export gate measures):

- **only**: that layer alone in int8 (its inputs, and a conv's weights), every other layer in float: how much
  that layer's quantization costs by itself;
- **except**: every layer in int8 but that one: how much keeping that layer in float recovers.

Layers are the nodes onnxruntime quantizes: the convs, and the activations, residual adds and clips between them.
The most sensitive layer is first: the lowest "only" score. The report also gives each layer's activation range
(onnxruntime's calibrator on the calibration crops) and its weights' range per output channel (the spread between
channels is what cross-layer equalization evens out). ``choose_float_layers`` keeps layers in float, the
most sensitive first, until a fidelity target is met: what ``python -m export --fidelity-target`` uses.

Convs are named as the PyTorch modules they came from (``blocks.0.body.0.conv.depthwise``), other nodes as their
module and op (``blocks.0:Add``).
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from artifacts.fidelity import psnr
from artifacts.runtimes import onnxruntime
from artifacts.io import png_bytes, write_atomic

from .onnx import calibration_reader, preprocess, quantizable_layers, quantize_static_qdq


@dataclass
class Trials:
    """Quantization trials of one float ONNX file: ``fidelity(float_layers, only)`` -> worst PSNR (dB)."""

    fp32: Path
    calibration: list[np.ndarray]
    inputs: list[tuple[str, np.ndarray]]
    method: str = "percentile"
    threads: int | None = None
    reference: list[np.ndarray] | None = None  # outputs to score against on ``inputs``; default: the float file's
    quantizer: str = "onnxruntime QDQ int8"
    layers: list[str] = field(init=False)
    count: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.reference is None:
            reference = onnxruntime.load(self.fp32, self.threads)
            self.reference = [reference(image) for _, image in self.inputs]
        self._work = tempfile.TemporaryDirectory(prefix="sensitivity-")
        self.pre = Path(self._work.name) / "pre.onnx"
        preprocess(self.fp32, self.pre)
        self.layers = list(quantizable_layers(self.pre))

    def fidelity(self, float_layers: tuple[str, ...] | list[str] = (), only: tuple[str, ...] | None = None) -> float:
        """The worst PSNR of the trial's outputs against the float file's, as the export gate measures it (the
        runtime loader, outputs joined by name)."""
        path = Path(self._work.name) / "trial.onnx"
        quantize_static_qdq(self.pre, path, self.calibration, method=self.method, float_layers=tuple(float_layers),
                            only_layers=only, preprocessed=True, cache=Path(self._work.name) / "ranges.json")
        run = onnxruntime.load(path, self.threads)
        self.count += 1
        return min(psnr(run(image), ref) for (_, image), ref in zip(self.inputs, self.reference))

    def op_types(self) -> dict[str, str]:
        return quantizable_layers(self.pre, op_types=True)

    @property
    def source(self) -> str:
        return str(self.fp32)

    def ranges(self) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
        """(weight ranges, activation ranges) per layer."""
        return weight_ranges(self.pre), activation_ranges(self.pre, self.calibration)

    def close(self) -> None:
        self._work.cleanup()


def weight_ranges(path: Path) -> dict[str, dict[str, float]]:
    """Per conv layer: the smallest and largest per-output-channel max |w|, and their ratio."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    nodes = {n.name: n for n in model.graph.node}
    out = {}
    for layer, node in quantizable_layers(path).items():
        if nodes[node].op_type != "Conv":
            continue
        w = weights.get(nodes[node].input[1])
        if w is None:
            continue
        per_channel = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
        lo, hi = float(per_channel.min()), float(per_channel.max())
        out[layer] = {"channel_absmax_min": lo, "channel_absmax_max": hi,
                      "channel_ratio": hi / lo if lo > 0 else math.inf}
    return out


def activation_ranges(path: Path, calibration: list[np.ndarray]) -> dict[str, dict[str, float]]:
    """Per layer: the min and max of its (first) input and its output over the calibration crops (onnxruntime's
    MinMax calibrator)."""
    import onnx
    from onnxruntime.quantization.calibrate import create_calibrator

    model = onnx.load(str(path))
    nodes = {n.name: n for n in model.graph.node}

    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):  # its progress lines
        calibrator = create_calibrator(str(path), augmented_model_path=str(Path(tmp) / "augmented.onnx"))
        calibrator.collect_data(calibration_reader(path, calibration, model.graph.input[0].name))
        ranges = calibrator.compute_data()
    out = {}
    for layer, node in quantizable_layers(path).items():
        row = {}
        for side, tensor in (("input", nodes[node].input[0]), ("output", nodes[node].output[0])):
            if tensor in ranges:
                lo, hi = (float(np.asarray(v).item()) for v in ranges[tensor].range_value)
                row[f"{side}_min"], row[f"{side}_max"] = lo, hi
        out[layer] = row
    return out


def analyze(trials, progress: Callable[[str], None] | None = None) -> dict:
    """The sensitivity report of every conv layer (see the module's docstring), most sensitive first."""
    say = progress or (lambda _: None)
    full = trials.fidelity()
    say(f"all layers int8: {full:.2f} dB")
    weights, acts = trials.ranges()
    ops = trials.op_types()
    rows = []
    for i, layer in enumerate(trials.layers, 1):
        only, without = trials.fidelity(only=(layer,)), trials.fidelity(float_layers=(layer,))
        say(f"[{i}/{len(trials.layers)}] {layer}: only {only:.2f} dB, all but it {without:.2f} dB")
        rows.append({"layer": layer, "op": ops[layer], "only_int8_db": round(only, 2),
                     "all_but_it_int8_db": round(without, 2), "gain_in_float_db": round(without - full, 2),
                     **acts.get(layer, {}), **weights.get(layer, {})})
    rows.sort(key=lambda r: (r["only_int8_db"], -r["gain_in_float_db"]))
    return {"artifact": trials.source, "quantizer": trials.quantizer, "method": trials.method,
            "calibration_crops": len(trials.calibration), "inputs": [name for name, _ in trials.inputs], "all_int8_db": round(full, 2), "trials": trials.count,
            "layers": rows}


def choose_float_layers(trials, target_db: float, report: dict | None = None,
                        progress: Callable[[str], None] | None = None) -> tuple[list[str], float, list[dict]]:
    """Layers to keep in float so that the int8 file's fidelity reaches ``target_db``: the most sensitive first
    (the lowest "only" score: the ranking of ``analyze``), one at a time, each step measured. Returns (layers,
    fidelity reached, the steps).

    The "only" order, not the "all but it" gain: a sensitive tensor is quantized both as one layer's output and as
    the next one's input, so floating either alone gains little (measured on dped: its last conv and the
    activation before it each gain under 0.1 dB alone)."""
    say = progress or (lambda _: None)
    reached = trials.fidelity()
    steps = [{"float_layers": [], "fidelity_db": round(reached, 2)}]
    say(f"all layers int8: {reached:.2f} dB (target {target_db:g} dB)")
    if reached >= target_db:
        return [], reached, steps
    if report is None:
        report = {"layers": [{"layer": layer, "only_int8_db": trials.fidelity(only=(layer,))}
                             for layer in trials.layers]}
    order = [r["layer"] for r in sorted(report["layers"], key=lambda r: r["only_int8_db"])]
    chosen: list[str] = []
    for layer in order:
        chosen.append(layer)
        reached = trials.fidelity(float_layers=chosen)
        steps.append({"float_layers": list(chosen), "fidelity_db": round(reached, 2)})
        say(f"+ {layer} in float: {reached:.2f} dB")
        if reached >= target_db:
            break
    return chosen, reached, steps


def relu_swap_text(swap: dict) -> str:
    """What the trials' float model changes, as the int8 export does: LeakyReLUs run as ReLUs."""
    return (f"The float model runs {len(swap['layers'])} LeakyReLUs as ReLUs, as the int8 export does (chosen at "
            f"{swap['floor_db']:g} dB on the calibration crops): {swap['vs_unchanged_db']} dB against the unchanged "
            f"model on the same photos; the fidelities here are against the swapped model, the export's gate "
            f"compares with the unchanged one")


def write_report(report: dict, out: Path) -> list[Path]:
    """``sensitivity.json``, ``sensitivity.md`` and ``sensitivity.png`` in ``out`` (each written whole, then
    renamed)."""
    out.mkdir(parents=True, exist_ok=True)
    rows = report["layers"]
    head = ("| layer | only it int8 (dB) | all but it int8 (dB) | gain in float (dB) | input range | output range "
            "| weight channel max|w| min / max (ratio) |\n|---|---:|---:|---:|---|---|---|")
    def span(r: dict, side: str) -> str:
        return f"[{r[side + '_min']:.3g}, {r[side + '_max']:.3g}]" if side + "_min" in r else "–"

    lines = [f"# Quantization sensitivity: {Path(report['artifact']).name}", "",
             f"{report['quantizer']}, {report['method']} calibration on {report['calibration_crops']} crops; "
             f"fidelity = worst PSNR against the float file on {', '.join(report['inputs'])}. All layers int8: "
             f"**{report['all_int8_db']} dB**. Most sensitive first.",
             *(["", relu_swap_text(report["relu_swap"]) + "."] if "relu_swap" in report else []), "", head]
    for r in rows:
        weights = (f"{r['channel_absmax_min']:.3g} / {r['channel_absmax_max']:.3g} ({r['channel_ratio']:.0f}x)"
                   if "channel_ratio" in r else "–")
        lines.append(f"| `{r['layer']}` | {r['only_int8_db']} | {r['all_but_it_int8_db']} | {r['gain_in_float_db']} "
                     f"| {span(r, 'input')} | {span(r, 'output')} | {weights} |")
    if "mixed_precision" in report:
        mp = report["mixed_precision"]
        lines += ["", f"Mixed precision for {mp['target_db']:g} dB: " + ", ".join(
            f"{'+ `' + step['float_layers'][-1] + '`' if step['float_layers'] else 'all int8'} "
            f"{step['fidelity_db']} dB" for step in mp["steps"])]
    paths = [out / "sensitivity.json", out / "sensitivity.md", out / "sensitivity.png"]
    write_atomic(paths[0], json.dumps(_finite(report), indent=2, allow_nan=False).encode())
    write_atomic(paths[1], ("\n".join(lines) + "\n").encode())
    write_atomic(paths[2], _chart(report))
    return paths


def _finite(value):
    """JSON has no infinity: an exact result (PSNR inf: the trial's output equals the float file's) is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _chart(report: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["layers"]
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(rows) + 1.6))
    y = np.arange(len(rows))[::-1]
    cap = max([r["only_int8_db"] for r in rows if math.isfinite(r["only_int8_db"])] + [report["all_int8_db"]]) + 5
    ax.barh(y + 0.2, [min(r["only_int8_db"], cap) for r in rows], 0.4,
            label="only this layer int8 (exact: at the edge)")
    ax.barh(y - 0.2, [r["all_but_it_int8_db"] for r in rows], 0.4, label="all but this layer int8")
    ax.axvline(report["all_int8_db"], color="k", lw=1, ls="--", label="all layers int8")
    ax.set_yticks(y, [r["layer"] for r in rows], fontsize=7)
    ax.set_xlabel("fidelity: worst PSNR against float (dB)")
    ax.set_title(f"{Path(report['artifact']).name}: most sensitive layer at the top")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return png_bytes(fig, dpi=110)
