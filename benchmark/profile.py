"""Per-layer profiles: where an artifact's time goes, layer by layer, against this machine's own peak.

- ONNX Runtime: its built-in profiler (``SessionOptions.enable_profiling``) times every node of the real artifact.
- LiteRT: the Python runtime has no per-op profiler, so every convolution is exported alone (fp32, at the input
  shape it has in the whole model) and timed in LiteRT with XNNPACK; the row says 'alone'. Elementwise ops are
  not timed this way; the whole-model time is shown beside the sum.
- Peak: the best throughput this runtime showed in the same run: a 64->64 1x1 convolution at the same size and
  thread count, or the fastest layer of the model if that was faster (dense 9x9 stems often are); each layer's
  GMAC/s is also given as a share of it.

- Memory bandwidth: a 256 MB tensor copy in PyTorch at the same thread count (bytes read + written per second).
- Roofline floor of a layer: the longer of its MACs at the peak and its activation traffic at that bandwidth; the
  model's floor is the sum over its layers. "% of floor" is floor / measured time: 100% would be the limit.

Each row: layer (PyTorch module path), op, ms, share of the summed layer time, MACs, GMAC/s, % of peak, MB of
activations read and written (fp32), the layer's roofline floor and the share of it the layer reaches.
"""
from __future__ import annotations

import json
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from artifacts.io import IMAGE, THUMBNAIL, png_bytes, write_atomic
from artifacts.quiet import quiet
from artifacts.runtimes.onnxruntime import open_session
from models.contract import thumbnail_size
from quantize.onnx import layer_of


@dataclass
class LayerTime:
    layer: str
    op: str
    ms: float
    share: float = 0.0
    macs: int = 0
    gmacs_per_s: float | None = None
    peak_share: float | None = None
    activation_mb: float = 0.0
    floor_ms: float | None = None      # max(MACs / peak, activation bytes / bandwidth)


@dataclass
class Profile:
    model: str
    runtime: str
    method: str            # 'runtime profiler' or 'each conv exported alone'
    size: tuple[int, int]
    threads: int
    whole_ms: float        # the whole artifact, median
    peak_gmacs_per_s: float
    layers: list[LayerTime]
    bandwidth_gb_s: float | None = None     # measured copy bandwidth
    macs: int = 0                           # all convs of the model
    achieved_gmacs_per_s: float | None = None   # the whole artifact's MACs over its measured time
    floor_ms: float | None = None           # sum of the layers' roofline floors


def conv_shapes(model: nn.Module, size: tuple[int, int]) -> dict[str, dict]:
    """Per Conv2d module path: input shape, output shape and MACs on a (1, 3, H, W) input."""
    found: dict[str, dict] = {}

    def hook(name):
        def record(mod: nn.Conv2d, inp, out) -> None:
            kh, kw = mod.kernel_size
            macs = out.numel() // out.shape[0] * (mod.in_channels // mod.groups) * kh * kw
            found[name] = {"in": tuple(inp[0].shape), "out": tuple(out.shape), "macs": int(macs),
                           "bytes": 4 * (inp[0].numel() + out.numel()), "op": _conv_kind(mod)}
        return record

    hooks = [m.register_forward_hook(hook(n)) for n, m in model.named_modules()
             if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, *size))
    finally:
        for h in hooks:
            h.remove()
    return found


def _conv_kind(mod: nn.Module) -> str:
    k = "x".join(map(str, mod.kernel_size))
    if isinstance(mod, nn.ConvTranspose2d):
        return f"transposed conv {k}"
    if mod.groups == mod.in_channels and mod.groups > 1:
        return f"depthwise {k} on {mod.in_channels}"
    return f"conv {k} {mod.in_channels}->{mod.out_channels}"


def memory_bandwidth_gb_s(threads: int, megabytes: int = 256, runs: int = 3) -> float:
    """Bytes read and written per second by a large tensor copy in PyTorch with ``threads`` threads (GB/s)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        src = torch.ones(megabytes * 2 ** 20 // 4)
        dst = torch.empty_like(src)
        ms = median_ms(lambda _: dst.copy_(src), None, runs)
    finally:
        torch.set_num_threads(previous)
    return round(2 * src.numel() * 4 / (ms / 1000) / 1e9, 2)


def roofline(profile: Profile, bandwidth: float) -> Profile:
    """Fill each layer's floor and the model's achieved GMAC/s and floor, for a measured ``bandwidth`` (GB/s)."""
    peak = profile.peak_gmacs_per_s
    for r in profile.layers:
        if r.macs or r.activation_mb:
            r.floor_ms = round(max(r.macs / (peak * 1e9) if peak else 0.0,
                                   r.activation_mb * 1e6 / (bandwidth * 1e9)) * 1000, 3)
    profile.bandwidth_gb_s = bandwidth
    # each conv once (the ONNX profiler may list a layer's nodes separately; MACs sit on the conv node only)
    seen: dict[str, LayerTime] = {r.layer: r for r in profile.layers if r.macs}
    profile.macs = sum(r.macs for r in seen.values())
    profile.floor_ms = round(sum(r.floor_ms or 0.0 for r in seen.values()), 2)
    if profile.whole_ms:
        profile.achieved_gmacs_per_s = round(profile.macs / (profile.whole_ms / 1000) / 1e9, 2)
    return profile


def median_ms(fn, x, runs: int) -> float:
    fn(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def _finish(layers: list[LayerTime], shapes: dict[str, dict], reference: float) -> tuple[list[LayerTime], float]:
    """Fill MACs, shares and throughput; returns (layers, slowest first; the peak: the reference conv's
    throughput or the fastest layer's, whichever is higher)."""
    total = sum(r.ms for r in layers) or 1.0
    for r in layers:
        info = shapes.get(r.layer, {})
        r.macs = info.get("macs", 0)
        r.activation_mb = round(info.get("bytes", 0) / 1e6, 2)
        r.share = round(r.ms / total, 4)
        if r.macs and r.ms > 0:
            r.gmacs_per_s = round(r.macs / (r.ms / 1000) / 1e9, 2)
    peak = max([reference, *(r.gmacs_per_s for r in layers if r.gmacs_per_s)])
    for r in layers:
        r.peak_share = round(r.gmacs_per_s / peak, 3) if r.gmacs_per_s and peak else None
        r.ms = round(r.ms, 3)
    return sorted(layers, key=lambda r: -r.ms), peak


# --- ONNX Runtime ---------------------------------------------------------------------------------------------

def _onnx(model: nn.Module, path: Path, size: tuple[int, int]) -> None:
    import warnings

    with warnings.catch_warnings(), quiet():
        warnings.simplefilter("ignore")
        thumb = thumbnail_size(model)
        torch.onnx.export(model.eval(), (torch.rand(1, 3, *size), *([torch.rand(1, 3, thumb, thumb)] if thumb else [])),
                          str(path), input_names=[IMAGE, *([THUMBNAIL] if thumb else [])],
                          opset_version=17, dynamo=False)


def onnx_profile(name: str, model: nn.Module, size: tuple[int, int], threads: int, runs: int = 3,
                 artifact: Path | None = None) -> Profile:
    """ONNX Runtime's own per-node times for ``artifact`` (default: ``model`` exported to fp32 ONNX here)."""
    shapes = conv_shapes(model, size)
    x = np.random.default_rng(0).random((1, 3, *size), dtype=np.float32)
    thumb = thumbnail_size(model)
    extra = {THUMBNAIL: np.random.default_rng(1).random((1, 3, thumb, thumb), dtype=np.float32)} if thumb else {}
    with tempfile.TemporaryDirectory() as tmp:
        path = artifact or Path(tmp) / "model.onnx"
        if artifact is None:
            _onnx(model, path, size)
        plain = open_session(path, threads)
        whole = median_ms(lambda v: plain.run(None, {IMAGE: v, **extra}), x, runs)
        session = open_session(path, threads, Path(tmp) / "trace")
        for _ in range(runs + 1):
            session.run(None, {IMAGE: x, **extra})
        trace = json.loads(Path(session.end_profiling()).read_text())
        peak = _peak_onnx(size, threads, Path(tmp))
    per_node: dict[tuple[str, str], list[float]] = defaultdict(list)
    for event in trace:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            node = event["name"][: -len("_kernel_time")]
            per_node[(node, event["args"].get("op_name", "?"))].append(event["dur"] / 1000)
    # ONNX Runtime's layout optimizer renames the nodes it rewrites (NCHWc); its convolutions still run in the
    # model's order, one per PyTorch conv, so the n-th conv node is the n-th conv module when the counts agree.
    convs = [key for key in per_node if "Conv" in key[1]]
    by_order = dict(zip(convs, shapes)) if len(convs) == len(shapes) else {}
    layers = []
    for (node, op), durations in per_node.items():
        ms = float(np.median(durations[1:] if len(durations) > 1 else durations))  # the first run warms up
        layer = by_order.get((node, op)) or layer_of(node, "Conv")
        if "Conv" not in op or layer not in shapes:  # a quantize/dequantize or other op named after a conv's scope
            layers.append(LayerTime(node, op, ms))  # keeps its own name: the conv's MACs are not its
            continue
        layers.append(LayerTime(layer, shapes[layer]["op"], ms))
    layers, peak = _finish(layers, shapes, peak)
    return Profile(name, "onnxruntime", "runtime profiler", size, threads, round(whole, 2), peak, layers)


def _peak_module() -> nn.Module:
    return nn.Conv2d(64, 64, 1)


def _peak_onnx(size: tuple[int, int], threads: int, tmp: Path) -> float:
    path = tmp / "peak.onnx"
    import warnings

    with warnings.catch_warnings(), quiet():
        warnings.simplefilter("ignore")
        torch.onnx.export(_peak_module().eval(), (torch.rand(1, 64, *size),), str(path), input_names=["x"],
                          opset_version=17, dynamo=False)
    session = open_session(path, threads)
    x = np.random.default_rng(0).random((1, 64, *size), dtype=np.float32)
    ms = median_ms(lambda v: session.run(None, {"x": v}), x, 3)
    return round(64 * 64 * size[0] * size[1] / (ms / 1000) / 1e9, 2)


# --- LiteRT ---------------------------------------------------------------------------------------------------

class _NHWC(nn.Module):
    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def _litert_ms(layer: nn.Module, shape: tuple[int, ...], threads: int, runs: int, tmp: Path) -> float:
    import litert_torch
    from ai_edge_litert.interpreter import Interpreter

    path = tmp / "layer.tflite"
    sample = torch.rand(shape[0], shape[2], shape[3], shape[1])
    with quiet():
        litert_torch.convert(_NHWC(layer).eval(), (sample,)).export(str(path))
        interp = Interpreter(model_path=str(path), num_threads=threads)
        interp.allocate_tensors()
    index = interp.get_input_details()[0]["index"]
    x = sample.numpy()

    def run(v):
        interp.set_tensor(index, v)
        interp.invoke()

    return median_ms(run, x, runs)


def litert_profile(name: str, model: nn.Module, size: tuple[int, int], threads: int, runs: int = 3,
                   whole_ms: float | None = None) -> Profile:
    """Each convolution of ``model`` exported alone to fp32 TFLite at its real input shape, timed in LiteRT."""
    shapes = conv_shapes(model, size)
    modules = dict(model.named_modules())
    layers = []
    with tempfile.TemporaryDirectory() as tmp:
        for layer, info in shapes.items():
            layers.append(LayerTime(layer, info["op"], _litert_ms(modules[layer], info["in"], threads, runs,
                                                                  Path(tmp))))
        peak_ms = _litert_ms(_peak_module(), (1, 64, *size), threads, runs, Path(tmp))
    peak = round(64 * 64 * size[0] * size[1] / (peak_ms / 1000) / 1e9, 2)
    layers, peak = _finish(layers, shapes, peak)
    return Profile(name, "litert", "each conv exported alone", size, threads, round(whole_ms or 0.0, 2), peak, layers)


# --- reports --------------------------------------------------------------------------------------------------

def write_profiles(profiles: list[Profile], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "profile.json", json.dumps([asdict(p) for p in profiles], indent=2).encode())
    lines = ["# Per-layer profiles", ""]
    for p in profiles:
        total = sum(r.ms for r in p.layers)
        lines += [f"## {p.model}, {p.runtime}, {p.size[0]}x{p.size[1]}, {p.threads} threads ({p.method})", "",
                  f"Whole artifact {p.whole_ms:.1f} ms; layers timed {total:.1f} ms; peak {p.peak_gmacs_per_s:.1f} "
                  f"GMAC/s (the faster of a 1x1 conv 64->64 and the best layer).", ""]
        if p.bandwidth_gb_s:
            achieved = f"{p.achieved_gmacs_per_s:.1f} GMAC/s" if p.achieved_gmacs_per_s else "-"
            share = f"{100 * p.achieved_gmacs_per_s / p.peak_gmacs_per_s:.0f}%" \
                if p.achieved_gmacs_per_s and p.peak_gmacs_per_s else "-"
            floor = f"{100 * p.floor_ms / p.whole_ms:.0f}%" if p.floor_ms and p.whole_ms else "-"
            lines += [f"Roofline: {p.macs / 1e9:.2f} G MACs in {p.whole_ms:.1f} ms = {achieved} ({share} of peak); "
                      f"memory bandwidth {p.bandwidth_gb_s:.1f} GB/s (copy); floor {p.floor_ms:.1f} ms "
                      f"(each layer at the peak or at the bandwidth, whichever is slower): the artifact reaches "
                      f"{floor} of it.", ""]
        lines += ["| layer | op | ms | share | M MACs | GMAC/s | % of peak | activations MB | floor ms | % of floor |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {r.layer} | {r.op} | {r.ms:.2f} | {100 * r.share:.1f}% | {r.macs / 1e6:.1f} | "
                  f"{'-' if r.gmacs_per_s is None else f'{r.gmacs_per_s:.1f}'} | "
                  f"{'-' if r.peak_share is None else f'{100 * r.peak_share:.0f}%'} | {r.activation_mb:.1f} | "
                  f"{'-' if r.floor_ms is None else f'{r.floor_ms:.2f}'} | "
                  f"{'-' if r.floor_ms is None or not r.ms else f'{100 * r.floor_ms / r.ms:.0f}%'} |"
                  for r in p.layers]
        lines.append("")
    write_atomic(out / "profile.md", "\n".join(lines).encode())
    paths = [out / "profile.json", out / "profile.md"]
    chart = _chart(profiles, out / "profile.png")
    return paths + [chart]


def _chart(profiles: list[Profile], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(profiles), 1, figsize=(10, 3 + 0.25 * max(len(p.layers[:15]) for p in profiles)
                                                       * len(profiles)), squeeze=False)
    for ax, p in zip(axes[:, 0], profiles):
        top = p.layers[:15][::-1]
        ax.barh([f"{r.layer} ({r.op})" for r in top], [r.ms for r in top])
        ax.set_xlabel("ms")
        ax.set_title(f"{p.model}, {p.runtime}, {p.size[0]}x{p.size[1]}, {p.threads} threads", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    write_atomic(path, png_bytes(fig, dpi=110))
    return path
