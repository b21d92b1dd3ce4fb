"""LiteRT artifacts on an Android phone over adb, timed by LiteRT's own ``benchmark_model`` tool.

Get the tool: the prebuilt ``android_aarch64_benchmark_model`` (and the ``_plus_flex`` variant) linked from
LiteRT's "Performance measurement" page, or build it from the LiteRT sources with Bazel
(``//tflite/tools/benchmark:benchmark_model`` for ``--config=android_arm64``). Pass its path with
``--benchmark-binary``. Quality figures for these rows are the host's for the same file (LiteRT's kernels are the
same); the phone contributes latency and memory.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

DEVICE_DIR = "/data/local/tmp/dslr_mobile"
DELEGATES = {"cpu": [], "gpu": ["--use_gpu=true"], "nnapi": ["--use_nnapi=true"]}


class AdbError(RuntimeError):
    """adb, the device or the benchmark binary is missing or failed; the message says which."""


@dataclass
class PhoneResult:
    avg_ms: float | None = None
    median_ms: float | None = None
    p90_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    std_ms: float | None = None
    init_ms: float | None = None
    first_ms: float | None = None
    peak_memory_mb: float | None = None
    runs: int | None = None


_KV = re.compile(r"([A-Za-z_ ()0-9]+?)=\s*([-0-9.eE+]+)")


def parse_benchmark_output(text: str) -> PhoneResult:
    """Parse the summary ``benchmark_model`` prints, e.g.::

        INFO: count=50 first=95921 curr=95302 min=94512 max=98233 avg=95678.9 std=842 p5=94600 median=95500 p95=97000
        INFO: Inference timings in us: Init: 25624, First inference: 105310, Warmup (avg): 97346.6, Inference (avg): 95678.9
        INFO: Memory footprint delta from the start of the tool (MB): init=5.3125 overall=46.5938
        INFO: Overall peak memory footprint (MB) via periodic monitoring: 52.2

    Times in the tool's output are microseconds; results are milliseconds.
    """
    result = PhoneResult()
    stats = None
    for line in text.splitlines():
        line = line.split("INFO:", 1)[-1].strip()
        if line.startswith("count="):
            stats = {k.strip(): float(v) for k, v in _KV.findall(line)}  # the last block is the timed runs
        elif line.startswith("Inference timings in us:"):
            parts = dict(p.split(":", 1) for p in line.split("us:", 1)[1].split(",") if ":" in p)
            parts = {k.strip(): float(v) for k, v in parts.items()}
            result.init_ms = parts.get("Init", 0) / 1000 if "Init" in parts else None
            result.first_ms = parts["First inference"] / 1000 if "First inference" in parts else None
            if "Inference (avg)" in parts:
                result.avg_ms = parts["Inference (avg)"] / 1000
        elif "peak memory footprint (MB)" in line:
            result.peak_memory_mb = float(line.rsplit(":", 1)[1].split()[0])
        elif line.startswith("Memory footprint delta") and result.peak_memory_mb is None:
            overall = {k.strip(): v for k, v in _KV.findall(line)}.get("overall")
            result.peak_memory_mb = float(overall) if overall else None
    if stats:
        us = lambda k: stats[k] / 1000 if k in stats else None  # noqa: E731
        result.runs = int(stats["count"]) if "count" in stats else None
        result.avg_ms = us("avg") if result.avg_ms is None else result.avg_ms
        result.median_ms, result.min_ms, result.max_ms, result.std_ms = us("median"), us("min"), us("max"), us("std")
        result.p90_ms = us("p90") or us("p95")
    if result.avg_ms is None:
        raise AdbError("benchmark_model printed no timings; its output ended with: "
                       + " | ".join(text.strip().splitlines()[-3:]))
    return result


def _adb(serial: str | None, *args: str, timeout: float = 600) -> str:
    cmd = ["adb", *(["-s", serial] if serial else []), *args]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AdbError(f"adb timed out: {' '.join(cmd)}") from None
    if done.returncode != 0:
        raise AdbError(f"{' '.join(cmd)} failed: {(done.stderr or done.stdout).strip()[:300]}")
    return done.stdout


def check_setup(serial: str | None, binary: str | None) -> str:
    """The device serial to use; AdbError naming exactly what is missing otherwise."""
    if shutil.which("adb") is None:
        raise AdbError("adb is not installed or not on PATH (Android SDK platform-tools)")
    if not binary:
        raise AdbError("--benchmark-binary PATH is required: LiteRT's benchmark_model for Android (see README)")
    if not Path(binary).is_file():
        raise AdbError(f"benchmark binary not found: {binary}")
    devices = [ln.split()[0] for ln in _adb(None, "devices").splitlines()[1:] if ln.strip().endswith("device")]
    if not devices:
        raise AdbError("no Android device connected (adb devices lists none in 'device' state)")
    if serial and serial not in devices:
        raise AdbError(f"device {serial} is not connected; connected: {', '.join(devices)}")
    return serial or devices[0]


def run_on_phone(serial: str, binary: str, artifact: Path, delegate: str, threads: int, runs: int,
                 input_hw: tuple[int, int]) -> PhoneResult:
    _adb(serial, "shell", "mkdir", "-p", DEVICE_DIR)
    _adb(serial, "push", binary, f"{DEVICE_DIR}/benchmark_model")
    _adb(serial, "shell", "chmod", "+x", f"{DEVICE_DIR}/benchmark_model")
    _adb(serial, "push", str(artifact), f"{DEVICE_DIR}/{artifact.name}")
    h, w = input_hw
    out = _adb(serial, "shell", f"{DEVICE_DIR}/benchmark_model", f"--graph={DEVICE_DIR}/{artifact.name}",
               f"--num_threads={threads}", f"--num_runs={runs}", "--warmup_runs=2",
               "--report_peak_memory_footprint=true", "--input_layer=enhance_image",
               f"--input_layer_shape=1,{h},{w},3", *DELEGATES[delegate])
    return parse_benchmark_output(out)
