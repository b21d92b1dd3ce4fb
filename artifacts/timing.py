"""Timing two runners of one runtime against each other: alternated run by run, so that the machine's drift (other
work, clock changes) cancels in their difference. Used by the benchmark and by the export's float-layer cost."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .fidelity import Runner


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
    Warm both up first."""
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
