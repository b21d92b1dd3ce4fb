"""Timing two runners of one runtime against each other: alternated run by run, so that the machine's drift (other
work, clock changes) cancels in their difference. Used by the benchmark and for the float layers' cost that
python -m export and python -m quantize record."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .fidelity import Runner
from .sidecar import FloatCost

COST_THREADS = min(2, os.cpu_count() or 1)   # the float layers' cost: the benchmark's default threads


@dataclass(frozen=True)
class Paired:
    own_ms: list[float]      # each timed run of the first runner
    extra_ms: list[float]    # the other runner's time minus the first's, run by run

    @property
    def own_median(self) -> float:
        return float(np.median(self.own_ms))

    @property
    def extra_median(self) -> float:
        return float(np.median(self.extra_ms)) if self.extra_ms else 0.0

    @property
    def extra_iqr(self) -> float:
        return float(np.subtract(*np.percentile(self.extra_ms, [75, 25]))) if self.extra_ms else 0.0


def paired(own: Runner, other: Runner | None, x: np.ndarray, runs: int) -> Paired:
    """``runs`` timed runs of ``own`` on ``x``, each next to one of ``other`` (if given; the order alternates).
    The caller warms both up first."""
    runners = {"own": own, "other": other} if other else {"own": own}
    times, extra = [], []
    for i in range(runs):
        t = {}
        for key in list(runners)[::1 if i % 2 == 0 else -1]:
            t0 = time.perf_counter()
            runners[key](x)
            t[key] = (time.perf_counter() - t0) * 1000
        times.append(t["own"])
        if other:
            extra.append(t["other"] - t["own"])
    return Paired(times, extra)


def float_cost(path: Path, int8_only: Path, size: tuple[int, int], threads: int = COST_THREADS, runs: int = 7
               ) -> FloatCost:
    """What the float layers of the int8 file ``path`` cost against ``int8_only``, the same file all in int8: both
    loaded in their runtime, warmed up, then timed alternately on one random image of ``size``."""
    from .runtimes import load
    from .targets import artifact_size

    mixed, every = load(path, threads), load(int8_only, threads)
    x = np.random.default_rng(0).random((*size, 3), dtype=np.float32)
    for run in (mixed, every):
        run(x)
    timed = paired(every, mixed, x, runs)
    int8_bytes = artifact_size(int8_only)
    return FloatCost(size=list(size), threads=threads, runs=runs, int8_ms=round(timed.own_median, 1),
                     extra_ms=round(timed.extra_median, 1), int8_bytes=int8_bytes,
                     extra_bytes=artifact_size(path) - int8_bytes)


def cost_text(cost: FloatCost | None) -> str:
    """' (+60.7 ms, +46 % against all-int8's 132.7 ms at 512x512, 2 threads; +0.34 MB)', or '' when not measured."""
    if cost is None:
        return ""
    return (f" ({cost.extra_ms:+.1f} ms, {100 * cost.extra_ms / cost.int8_ms:+.0f} % against all-int8's "
            f"{cost.int8_ms:.1f} ms at {cost.size[0]}x{cost.size[1]}, {cost.threads} threads; "
            f"{cost.extra_bytes / 1e6:+.2f} MB)")
