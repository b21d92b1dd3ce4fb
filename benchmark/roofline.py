"""The machine's own limits, as columns of the main table: for each timed artifact, its achieved GMAC/s, the share
of this machine's peak for the same runtime, precision and thread count, and the share of its roofline floor.

- **Peak.** A probe network (1x1 conv 3->64, then ``DEPTH`` 3x3 convs 64->64, then 1x1 64->3) and the same network
  without the 64->64 convs, both exported by the project's own export path for the row's target and precision,
  loaded by the same loader and timed at the benchmark size. The peak is the 64->64 convs' MACs over the time
  difference, so that the ends (I/O conversion, the thin convs) cancel out. PyTorch rows time the probe eagerly.
  A 3x3 conv, not a 1x1: measured at 720x1280 with 2 threads, a 64->64 1x1 conv ran at 9.3 (PyTorch), 87.0 and
  310.5 (LiteRT fp32, int8), 89.9 and 331.8 GMAC/s (ONNX Runtime fp32, int8), and a 3x3 at 53.7, 87.5, 423.0,
  114.6 and 451.4: the 1x1 is not the machine's limit, and `dped`'s 3x3 convs ran above it.
- **Bandwidth.** ``benchmark.profile.memory_bandwidth_gb_s``: a 256 MB tensor copy at the same thread count.
- **Floor** of a model: for each convolution, the longer of its MACs at the peak and its activation traffic (input
  and output, at the precision's bytes per element: 1 for int8, 2 for fp16 ONNX, else 4) at the bandwidth; summed
  over the convolutions. "% floor" is the floor over the measured time: 100 % would be the physical limit.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable
from importlib import import_module
from pathlib import Path

import numpy as np
import torch
from torch import nn

DEPTH = 2          # 64->64 3x3 convs in the probe
KERNEL = 3
WIDTH = 64
RUNS = 3


class Probe(nn.Module):
    """1x1 3 -> 64, ``depth`` x 3x3 64 -> 64, 1x1 64 -> 3, with ReLUs between (each conv is its own op)."""

    def __init__(self, depth: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, WIDTH, 1), nn.ReLU()]
        for _ in range(depth):
            layers += [nn.Conv2d(WIDTH, WIDTH, KERNEL, padding=KERNEL // 2), nn.ReLU()]
        self.body = nn.Sequential(*layers, nn.Conv2d(WIDTH, 3, 1))
        gen = torch.Generator().manual_seed(0)
        for m in self.body:
            if isinstance(m, nn.Conv2d):  # small weights, so int8 ranges stay sensible
                nn.init.normal_(m.weight, std=(2 / m.weight[0].numel()) ** 0.5, generator=gen)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def bytes_per_element(target: str, precision: str) -> int:
    if precision == "int8":
        return 1
    if precision == "fp16" and target != "tflite":  # LiteRT's fp16 files store fp16 weights, compute in float32
        return 2
    return 4


def _median_ms(fn, runs: int = RUNS) -> float:
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def _probe_ms(depth: int, target: str, precision: str, threads: int, size: tuple[int, int], tmp: Path) -> float:
    image = np.random.default_rng(0).random((*size, 3), dtype=np.float32)
    probe = Probe(depth).eval()
    if target == "pytorch":
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            x = torch.from_numpy(image.transpose(2, 0, 1)[None].copy())
            with torch.no_grad():
                return _median_ms(lambda: probe(x))
        finally:
            torch.set_num_threads(previous)
    from artifacts import TARGETS
    from artifacts.quiet import quiet
    from artifacts.runtimes import load
    from export.common import ExportSpec

    path = tmp / f"probe{depth}_{precision}{TARGETS[target].suffix}"
    spec = ExportSpec(model="probe", target=target, precision=precision, size=size, fixed_size=True, out=tmp)
    with quiet():
        import_module(f"export.{target}").convert(probe, spec, path, calibration=[image, image[::-1].copy()])
    run = load(path, threads)
    return _median_ms(lambda: run(image))


def measure_peak(target: str, precision: str, threads: int, size: tuple[int, int]) -> float:
    """GMAC/s of a 64->64 3x3 conv on this machine in ``target``'s runtime at ``precision``, ``threads`` and
    ``size`` (the difference of two probes: see the module's docstring)."""
    with tempfile.TemporaryDirectory() as tmp:
        deep = _probe_ms(DEPTH, target, precision, threads, size, Path(tmp))
        shallow = _probe_ms(0, target, precision, threads, size, Path(tmp))
    macs = DEPTH * WIDTH * WIDTH * KERNEL * KERNEL * size[0] * size[1]
    return round(macs / (max(deep - shallow, 1e-3) / 1000) / 1e9, 2)


def floor_ms(convs: dict[str, dict], peak: float, bandwidth: float, element_bytes: int) -> float:
    """Sum over ``convs`` (``benchmark.profile.conv_shapes``) of max(MACs at ``peak`` GMAC/s, activation bytes at
    ``bandwidth`` GB/s), in ms."""
    total = 0.0
    for c in convs.values():
        traffic = c["bytes"] // 4 * element_bytes
        total += max(c["macs"] / (peak * 1e9), traffic / (bandwidth * 1e9))
    return round(total * 1000, 2)


@dataclass
class Roofline:
    """Measures each (target, precision, threads) peak once per run and fills the rows' roofline columns."""
    size: tuple[int, int]
    log: Callable[[str], None] = print
    peaks: dict[tuple[str, str, int], float | None] = field(default_factory=dict)
    bandwidths: dict[int, float] = field(default_factory=dict)

    def peak(self, target: str, precision: str, threads: int) -> float | None:
        key = (target, precision, threads)
        if key not in self.peaks:
            try:
                self.peaks[key] = measure_peak(target, precision, threads, self.size)
                self.log(f"  peak ({target} {precision}, {threads} threads, 3x3 conv 64->64 at "
                         f"{self.size[0]}x{self.size[1]}): {self.peaks[key]:.1f} GMAC/s")
            except Exception as exc:  # noqa: BLE001 - a probe that cannot run leaves the columns empty, not the run
                self.peaks[key] = None
                self.log(f"  peak ({target} {precision}, {threads} threads): not measured ({exc})")
        return self.peaks[key]

    def bandwidth(self, threads: int) -> float:
        if threads not in self.bandwidths:
            from .profile import memory_bandwidth_gb_s

            self.bandwidths[threads] = memory_bandwidth_gb_s(threads)
            self.log(f"  memory bandwidth (copy, {threads} threads): {self.bandwidths[threads]:.1f} GB/s")
        return self.bandwidths[threads]

    def fill(self, row: dict, convs: dict[str, dict]) -> None:
        """Set ``row``'s GMAC/s, share of peak, floor and share of floor (a timed row of a known model)."""
        ms, threads = row.get("latency_ms_median"), row.get("threads")
        if not ms or not threads or not convs:
            return
        macs = sum(c["macs"] for c in convs.values())
        row["gmacs_per_s"] = round(macs / (ms / 1000) / 1e9, 2)
        peak = self.peak(row["target"], row["precision"], threads)
        if not peak:
            return
        row["peak_gmacs_per_s"] = peak
        row["peak_pct"] = round(100 * row["gmacs_per_s"] / peak, 1)
        row["bandwidth_gb_s"] = self.bandwidth(threads)
        row["floor_ms"] = floor_ms(convs, peak, row["bandwidth_gb_s"],
                                   bytes_per_element(row["target"], row["precision"]))
        row["floor_pct"] = round(100 * row["floor_ms"] / ms, 1)
