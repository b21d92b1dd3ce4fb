import pytest

from benchmark.__main__ import main as bench_main
from benchmark.adb import AdbError, check_setup, parse_benchmark_output

# benchmark_model's summary as LiteRT documents it (values in microseconds)
SAMPLE = """\
INFO: STARTING!
INFO: Graph: [/data/local/tmp/dslr_mobile/dped_mobile_int8.tflite]
INFO: Num threads: [4]
INFO: Loaded model /data/local/tmp/dslr_mobile/dped_mobile_int8.tflite
INFO: The input model file size (MB): 0.138
INFO: Initialized session in 25.624ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=6 first=105310 curr=97001 min=96012 max=105310 avg=98900.2 std=3100
INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=95921 curr=95302 min=94512 max=98233 avg=95678.9 std=842 p5=94600 median=95500 p95=97000
INFO: Inference timings in us: Init: 25624, First inference: 105310, Warmup (avg): 98900.2, Inference (avg): 95678.9
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=5.3125 overall=46.5938
INFO: Overall peak memory footprint (MB) via periodic monitoring: 52.2
"""


def test_parser_reads_the_timed_block_and_memory():
    r = parse_benchmark_output(SAMPLE)
    assert r.runs == 50 and r.avg_ms == pytest.approx(95.6789) and r.median_ms == pytest.approx(95.5)
    assert r.p90_ms == pytest.approx(97.0) and r.init_ms == pytest.approx(25.624)
    assert r.peak_memory_mb == pytest.approx(52.2)


def test_parser_without_percentiles_or_peak_line():
    text = "\n".join(ln for ln in SAMPLE.splitlines() if "periodic" not in ln).replace(
        " p5=94600 median=95500 p95=97000", "")
    r = parse_benchmark_output(text)
    assert r.median_ms is None and r.avg_ms == pytest.approx(95.6789) and r.peak_memory_mb == pytest.approx(46.5938)


def test_parser_rejects_output_without_timings():
    with pytest.raises(AdbError, match="no timings"):
        parse_benchmark_output("ERROR: Could not open 'x.tflite'.\nERROR: Benchmarking failed.")


def test_missing_adb_binary_or_device_are_clear_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no adb here
    with pytest.raises(AdbError, match="adb is not installed"):
        check_setup(None, "x")
    assert bench_main(["--adb", "--benchmark-binary", "nowhere"]) == 1
    assert "adb is not installed" in capsys.readouterr().err
    fake = tmp_path / "adb"
    fake.write_text("#!/bin/sh\necho 'List of devices attached'\n")
    fake.chmod(0o755)
    with pytest.raises(AdbError, match="--benchmark-binary"):
        check_setup(None, None)
    with pytest.raises(AdbError, match="not found"):
        check_setup(None, str(tmp_path / "missing"))
    binary = tmp_path / "benchmark_model"
    binary.write_text("")
    with pytest.raises(AdbError, match="no Android device"):
        check_setup(None, str(binary))
