"""Measure one (artifact, runtime, threads) in a fresh child process, so that its peak memory is its own."""
from __future__ import annotations

import pickle
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Job:
    model: str
    target: str            # "pytorch" for the eager reference
    precision: str
    runtime: str
    threads: int
    source: str            # artifact path, or the model name for PyTorch
    size: tuple[int, int]  # latency input (H, W)
    runs: int
    warmup: int
    eval_inputs: list[np.ndarray]   # phone-side evaluation photos
    full_res: tuple[int, int] | None = None  # instead: one tiled pass over a photo of this (H, W)
    tile: int = 256
    halo: int = 18
    thumbnail: int = 0                       # image-adaptive models: thumbnail side (made once per photo)
    paired: str | None = None                # another artifact of the same runtime, timed alternately with this one


def measure(job: Job) -> dict:
    """Latency (warm-up, then ``runs`` timed runs) on a random image of ``job.size``; outputs on the eval set.

    With ``job.paired``, the other artifact runs right after (or before: the order alternates) each timed run, and
    the median of its extra time per run comes back too (``paired_extra_ms_median``, and the interquartile range of
    those differences, ``paired_extra_ms_iqr``): a difference of a few percent
    between two files is lost in the drift between two separate measurements, not in paired ones. The peak memory
    is then taken after one run of this file alone, before the other loads."""
    from artifacts.runtimes import runtime
    from artifacts.timing import paired

    fn = runtime(job.runtime).load(job.source, job.threads)
    rng = np.random.default_rng(0)
    if job.full_res:  # the enhance command's tiled path on a full-resolution photo
        from artifacts.tiling import enhance_tiled

        photo = rng.integers(0, 256, (*job.full_res, 3), dtype=np.uint8)
        t0 = time.perf_counter()
        enhance_tiled(photo, fn, job.tile, job.halo, thumbnail=job.thumbnail)
        ms = (time.perf_counter() - t0) * 1000
        return {"latency_ms_median": ms, "latency_ms_p90": ms, "peak_rss_mb": round(peak_rss_mb(), 1),
                "outputs": []}
    x = rng.random((*job.size, 3), dtype=np.float32)
    for _ in range(max(job.warmup, 1 if job.paired else 0)):
        fn(x)
    own_peak = peak_rss_mb()  # before a paired file loads: the row's memory stays its own file's
    other = runtime(job.runtime).load(job.paired, job.threads) if job.paired else None
    for _ in range(job.warmup if other else 0):
        other(x)
    timed = paired(fn, other, x, job.runs)
    outputs = [np.asarray(fn(img), dtype=np.float32) for img in job.eval_inputs]
    res = {"latency_ms_median": timed.own_median, "latency_ms_p90": float(np.percentile(timed.own_ms, 90)),
           "peak_rss_mb": round(own_peak if other else peak_rss_mb(), 1), "outputs": outputs}
    if other:  # the paired artifact's extra time, run by run, so that the machine's drift cancels
        res["paired_extra_ms_median"], res["paired_extra_ms_iqr"] = timed.extra_median, timed.extra_iqr
    return res


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux's VmHWM starts afresh at exec; ru_maxrss would carry the
    forking parent's peak over, so it is only the fallback (macOS reports it in bytes)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def measure_in_child(job: Job, timeout_s: float = 900) -> dict:
    """``measure`` in a fresh interpreter (``python -m benchmark.measure JOB RESULT``) that imports only the
    runner it needs; errors come back as {'error': message}."""
    with tempfile.TemporaryDirectory() as tmp:
        job_file, result_file = Path(tmp) / "job.pkl", Path(tmp) / "result.pkl"
        job_file.write_bytes(pickle.dumps(job))
        try:
            done = subprocess.run([sys.executable, "-m", "benchmark.measure", str(job_file), str(result_file)],
                                  capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout_s:.0f} s"}
        if done.returncode != 0 or not result_file.exists():
            lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()] or [f"exit {done.returncode}"]
            return {"error": lines[-1][:200]}
        return pickle.loads(result_file.read_bytes())


if __name__ == "__main__":
    _job, _result = sys.argv[1:3]
    Path(_result).write_bytes(pickle.dumps(measure(pickle.loads(Path(_job).read_bytes()))))
