import json
import re

import pytest
import torch

from artifacts import Sidecar
from benchmark.__main__ import main as bench_main
from benchmark.report import table
from models import create_model

pytestmark = pytest.mark.slow


@pytest.fixture
def small_exports(monkeypatch):
    """The benchmark's own exports traced and calibrated at 128x128 instead of the export command's 512x512: these
    tests check the rows, and the int8 exports at 512 took two of the suite's minutes."""
    from functools import partial

    import benchmark.api
    from export.common import ExportSpec

    monkeypatch.setattr(benchmark.api, "ExportSpec", partial(ExportSpec, size=(128, 128)))

FIELDS = {"model", "target", "precision", "runtime", "threads", "input_hw", "size_bytes", "latency_ms_median",
          "latency_ms_p90", "peak_rss_mb", "psnr_db", "ssim", "psnr_drop_db", "fidelity_psnr_db", "status"}


def test_benchmark_on_a_dped_test_patch_layout(dped_layout, tmp_path, capsys, small_exports):
    out = tmp_path / "bench"
    code = bench_main(["--models", "dped_mobile", "--targets", "tflite,onnx,coreml,tensorrt",
                       "--precisions", "fp32", "--threads", "1", "--runs", "2", "--size", "64x64",
                       "--data", str(dped_layout), "--phone", "iphone", "--export-dir", str(tmp_path / "exp"),
                       "--full-res", "300x400",
                       "--out", str(out)])
    assert code == 0
    rows = json.loads((out / "results.json").read_text())
    assert all(FIELDS <= set(r) for r in rows)
    by_runtime = {r["runtime"]: r for r in rows if r["model"] == "dped_mobile"}
    tiled = by_runtime["litert-tiled"]
    assert tiled["input_hw"] == "300x400" and tiled["latency_ms_median"] > 0 and tiled["peak_rss_mb"] > 0
    assert by_runtime["pytorch"]["psnr_drop_db"] == 0.0
    classical = {r["model"]: r for r in rows if r["target"] == "classical"}  # beside the model, same photos
    assert set(classical) == {"levels", "gray_world", "clahe"}
    assert all(r["psnr_db"] > 0 and r["ssim"] > 0 and r["latency_ms_median"] > 0 for r in classical.values())
    for rt in ("litert", "onnxruntime"):
        r = by_runtime[rt]
        assert r["status"] == "ok" and r["latency_ms_median"] > 0 and r["peak_rss_mb"] > 0
        assert r["fidelity_psnr_db"] >= 60 and abs(r["psnr_drop_db"]) < 0.01
    for rt in ("pytorch", "litert", "onnxruntime"):  # roofline columns: against this machine's own peak and floor
        r = by_runtime[rt]
        assert r["gmacs_per_s"] > 0 and r["peak_gmacs_per_s"] > 0 and r["bandwidth_gb_s"] > 0, r
        assert r["peak_pct"] == round(100 * r["gmacs_per_s"] / r["peak_gmacs_per_s"], 1)
        assert r["floor_ms"] > 0 and r["floor_pct"] == round(100 * r["floor_ms"] / r["latency_ms_median"], 1)
    assert by_runtime["tensorrt"]["status"].startswith("skipped")
    assert by_runtime["coreml"]["status"] == "skipped: Core ML runs only on macOS"
    assert by_runtime["coreml"]["quality_mode"] == "emulated" and by_runtime["coreml"]["psnr_db"] > 0
    for name in ("results.csv", "results.md", "latency_vs_psnr.png"):
        assert (out / name).stat().st_size > 0
    printed = capsys.readouterr().out
    assert "litert" in printed and "% peak" in printed and "% floor" in printed
    if create_model("dped_mobile", pretrained=True).contract.thumbnail:  # image-adaptive: what its branch costs
        (local,) = [r for r in rows if r["model"] == "dped_mobile/no-branch"]
        assert local["runtime"] == "litert" and local["latency_ms_median"] > 0 and local["fidelity_psnr_db"] is None
        assert local["macs_per_pixel"] == by_runtime["litert"]["macs_per_pixel"]  # the branch: a cost per photo
        assert local["parameters"] < by_runtime["litert"]["parameters"]
        # the branch's cost, timed in pairs with the whole model's file, is what the report prints
        cost = re.search(r"dped_mobile's global branch \(tflite fp32, 1 thr\): ([+-]\d+\.\d)% latency, timed in "
                         r"pairs", printed)
        assert cost and float(cost.group(1)) == local["branch_cost_pct"] and local["branch_cost_spread_pct"] >= 0


def test_benchmark_usage_errors(capsys, tmp_path):
    assert bench_main(["--models", "unet", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'unet'" in err and "dped_mobile" in err and "Traceback" not in err
    assert bench_main(["--targets", "openvino", "--out", str(tmp_path)]) == 2
    assert "unknown target 'openvino'; choose from: tflite, onnx, coreml, tensorrt" in capsys.readouterr().err
    for argv, needle in ((["--threads", "0"], "--threads takes a comma list of positive integers"),
                         (["--threads", "two"], "--threads takes"), (["--runs", "0"], "--runs must be a positive")):
        assert bench_main([*argv, "--out", str(tmp_path)]) == 2
        assert needle in capsys.readouterr().err
    assert bench_main(["--recipes", "minmax+percentile", "--out", str(tmp_path)]) == 2
    assert "recipe 'minmax+percentile': one calibration method at most" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing measured, nothing written


def test_table_formats_missing_values():
    text = table([{"model": "m", "status": "skipped: why", "latency_ms_median": None, "psnr_db": 21.456}])
    header, rule, row = text.splitlines()
    cells = dict(zip(header.split(), row.split()))
    assert cells["status"] == "skipped:" and "skipped: why" in row
    assert row.split()[-1] == "-" and "21.5" in row.split()  # missing values print '-', floats are rounded
    assert set(rule.replace(" ", "")) == {"-"}


def test_profiles_rank_a_deliberately_slow_layer_first(tmp_path):
    from torch import nn

    from benchmark.profile import litert_profile, memory_bandwidth_gb_s, onnx_profile, roofline, write_profiles

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 16, 1)
            self.slow = nn.Conv2d(16, 16, 15, padding=7)  # 57,600 MACs per pixel: the rest has under 300
            self.head = nn.Conv2d(16, 3, 1)

        def forward(self, x):
            return self.head(torch.relu(self.slow(torch.relu(self.stem(x)))))

    net = Net().eval()
    profiles = [onnx_profile("net", net, (64, 64), 1, runs=2), litert_profile("net", net, (64, 64), 1, runs=2)]
    for p in profiles:
        assert p.layers[0].layer == "slow" and p.layers[0].share > 0.5, p.layers
        assert p.layers[0].macs == 16 * 16 * 15 * 15 * 64 * 64 and p.peak_gmacs_per_s > 0
    bandwidth = memory_bandwidth_gb_s(1, megabytes=64)
    assert bandwidth > 0.1
    for p in map(lambda p: roofline(p, bandwidth), profiles):
        slow = p.layers[0]
        assert slow.floor_ms >= slow.macs / (p.peak_gmacs_per_s * 1e9) * 1000 - 1e-3  # at least the compute floor
        assert slow.floor_ms <= slow.ms + 1e-3  # the peak is at least this layer's rate: compute-bound floor
        assert p.macs == sum(r.macs for r in p.layers) and 0 < p.floor_ms
    paths = write_profiles(profiles, tmp_path)
    text = (tmp_path / "profile.md").read_text()
    assert "| slow | conv 15x15 16->16 |" in text and "memory bandwidth" in text
    assert all(p.stat().st_size > 0 for p in paths)


def test_roofline_floor_is_the_slower_of_compute_and_traffic():
    from benchmark.roofline import bytes_per_element, floor_ms

    compute_bound = {"macs": 10 ** 9, "bytes": 4 * 10 ** 6}     # 10 ms at 100 GMAC/s, 0.4 ms at 10 GB/s
    memory_bound = {"macs": 10 ** 6, "bytes": 4 * 10 ** 8}      # 0.01 ms of compute, 40 ms of traffic in fp32
    assert floor_ms({"a": compute_bound}, 100.0, 10.0, 4) == 10.0
    assert floor_ms({"b": memory_bound}, 100.0, 10.0, 4) == 40.0
    assert floor_ms({"b": memory_bound}, 100.0, 10.0, bytes_per_element("tflite", "int8")) == 10.0  # a quarter
    assert floor_ms({"a": compute_bound, "b": memory_bound}, 100.0, 10.0, 4) == 50.0
    assert bytes_per_element("onnx", "fp16") == 2 and bytes_per_element("tflite", "fp16") == 4


def test_only_an_artifact_of_the_default_recipe_is_reused():
    from artifacts.sidecar import Calibration
    from benchmark.api import default_recipe

    plain = Calibration(source="built-in training photos", count=4, size=[512, 512], method="percentile")
    assert default_recipe(None, None) and default_recipe(plain, "percentile")
    assert not default_recipe(Calibration(**{**plain.__dict__, "method": "minmax"}), "percentile")
    assert not default_recipe(Calibration(**{**plain.__dict__, "weight_methods": ["cle"]}), "percentile")
    assert not default_recipe(Calibration(**{**plain.__dict__, "float_layers": ["out.conv"]}), "percentile")
    assert not default_recipe(Calibration(**{**plain.__dict__, "qat_steps": 200}), "percentile")
    # an int8 ONNX from before its 7-bit weights (no weight_qmax recorded) is not what onnx int8 makes now
    assert not default_recipe(plain, "percentile", weight_qmax=64)
    assert default_recipe(Calibration(**{**plain.__dict__, "weight_qmax": 64}), "percentile", weight_qmax=64)
    # a --fidelity-target file may carry a free recipe its search took (all in int8, the default LeakyReLU floor)
    from benchmark.api import made_with, recipes_made
    from export.common import ExportSpec

    free = Calibration(**{**plain.__dict__, "weight_methods": ["smoothquant"], "relu_min_db": 48.0})
    floated = Calibration(**{**plain.__dict__, "float_layers": ["out.conv"], "relu_min_db": 51.0})

    def made(calibration, **spec):
        return any(made_with(calibration, "percentile", methods, float_layers=True, relu_min_db=floor)
                   for methods, floor in recipes_made(ExportSpec(target="onnx", precision="int8", **spec)))

    assert made(free, fidelity_target=45.0) and made(floated, fidelity_target=45.0)
    assert not made(free) and not made(free, fidelity_target=45.0, weight_methods=("bias-correction",))
    assert not made(Calibration(**{**free.__dict__, "relu_min_db": 51.0}), fidelity_target=45.0)


def test_int8_recipes_get_their_own_rows(dped_layout, tmp_path, small_exports):
    from benchmark.api import Recipe

    assert Recipe.parse("adaround+minmax+cle") == Recipe("adaround+minmax+cle", "minmax", ("cle", "adaround"))
    assert Recipe.parse("bias-correction").name("onnx", "int8") == "percentile+bias-correction"
    assert Recipe.parse("percentile").unfit("tflite", "int8").startswith("tflite int8 has no calibration method")
    out, exp = tmp_path / "bench", tmp_path / "exp"
    assert bench_main(["--models", "dped_mobile", "--targets", "onnx", "--precisions", "int8", "--threads", "1",
                       "--runs", "1", "--size", "64x64", "--full-res", "none", "--no-roofline", "--export-dir",
                       str(exp), "--data", str(dped_layout), "--phone", "iphone",
                       "--recipes", "minmax,bias-correction,percentile,histogram", "--out", str(out)]) == 0
    rows = {r["recipe"]: r for r in json.loads((out / "results.json").read_text())
            if r["model"] == "dped_mobile" and r["precision"] == "int8"}
    # "percentile" is onnx's default recipe: its row is the default one, not a second
    assert set(rows) == {"percentile", "minmax", "percentile+bias-correction", "histogram"}
    assert rows["histogram"]["status"].startswith("skipped: onnx int8 has no calibration method histogram")
    assert "extra_recipe" not in rows["percentile"]
    for name in ("minmax", "percentile+bias-correction"):
        row = rows[name]
        assert row["status"] == "ok" and row["latency_ms_median"] > 0 and row["extra_recipe"]
        assert row["fidelity_vs_default_db"] == round(row["fidelity_psnr_db"] - rows["percentile"]["fidelity_psnr_db"],
                                                      2)
    sidecar = Sidecar.read(exp / "recipes" / "percentile+bias-correction" / "dped_mobile_int8.onnx.json")
    assert sidecar.calibration.method == "percentile" and sidecar.calibration.weight_methods == ["bias-correction"]
    assert "percentile+bias-correction" in (out / "results.md").read_text()


def test_a_fidelity_target_recipe_reports_the_layers_it_kept_in_float(dped_layout, tmp_path, small_exports):
    """--recipes fidelity-DB: the export's --fidelity-target as a row beside the default recipe, with the float
    layers it chose (from its sidecar) and its latency; a target that cannot search gets a skipped row."""
    from benchmark.api import Recipe

    assert Recipe.parse("minmax+fidelity-45").name("tflite", "int8") == "minmax+fidelity-45"
    assert Recipe.parse("fidelity-45").unfit("tflite", "fp16") == "tflite fp16 cannot choose float layers for a " \
                                                                  "fidelity target"
    with pytest.raises(ValueError, match="one fidelity-DB"):
        Recipe.parse("fidelity-high")
    out, exp = tmp_path / "bench", tmp_path / "exp"
    assert bench_main(["--models", "dped_mobile", "--targets", "tflite", "--precisions", "int8", "--threads", "1",
                       "--runs", "1", "--size", "64x64", "--full-res", "none", "--no-roofline", "--export-dir",
                       str(exp), "--data", str(dped_layout), "--phone", "iphone", "--recipes", "fidelity-50",
                       "--out", str(out)]) == 0
    rows = {r["recipe"]: r for r in json.loads((out / "results.json").read_text())
            if r["model"] == "dped_mobile" and r["precision"] == "int8" and r["target"] == "tflite"}
    row = rows["histogram+fidelity-50"]
    sidecar = Sidecar.read(exp / "recipes" / "histogram+fidelity-50" / "dped_mobile_int8.json")
    assert row["status"] == "ok" and row["latency_ms_median"] > 0 and row["fidelity_psnr_db"] is not None
    assert row["float_layers"] == sidecar.calibration.float_layers != [] and sidecar.fidelity.gate_db == 50
    assert row["weight_methods"] == sidecar.calibration.weight_methods   # what the search added, if anything
    assert ",".join(row["float_layers"]) in (out / "results.md").read_text()


def test_paired_timing_measures_the_other_files_extra_time():
    """Two files timed alternately in one process: the heavier one's extra time per run comes back."""
    from benchmark.measure import Job, measure

    light, heavy = "dped_mobile_s", "dped"   # about 12x the MACs per pixel
    res = measure(Job(light, "pytorch", "fp32", "pytorch", 1, light, (64, 64), 3, 1, [], paired=heavy))
    alone = measure(Job(light, "pytorch", "fp32", "pytorch", 1, light, (64, 64), 3, 1, []))
    assert res["paired_extra_ms_median"] > res["latency_ms_median"] > 0
    assert "paired_extra_ms_median" not in alone
