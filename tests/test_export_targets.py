"""Every target and precision buildable here: loads in its own runtime and passes its gate."""
import json

import numpy as np
import onnx
import pytest

from artifacts import TARGETS, Sidecar, resolve
from artifacts.runtimes import coreml as coreml_runtime
from artifacts.runtimes.litert import conv_input_types
from artifacts.runtimes.tensorrt import missing as tensorrt_missing
from export import coreml
from export.__main__ import main as export_main
from quantize.calibration import calibration_images
from tests.conftest import write_photo

pytestmark = pytest.mark.slow


def test_all_targets_and_precisions_export_and_pass(exported):
    written, out = exported
    for target in TARGETS.values():
        if target.name == "tensorrt" and tensorrt_missing():
            assert not list(out.glob("*.engine"))  # skipped, with its reason in the summary
            continue
        for precision in target.precisions:
            sidecar = Sidecar.read(out / target.sidecar_name(f"dped_mobile_{precision}"))
            assert written[(target.name, precision)].ok and sidecar == written[(target.name, precision)].sidecar
            assert (out / f"dped_mobile_{precision}{target.suffix}").exists(), (target.name, precision)
            assert sidecar.fidelity.passed and sidecar.target == target.name and sidecar.status == "ok"
            assert sidecar.fidelity.mode == ("emulated" if target.name == "coreml" and coreml_runtime.unavailable()
                                             else "measured")


def test_int8_tflite_is_really_integer(exported):
    _, out = exported
    types = conv_input_types(out / "dped_mobile_int8.tflite")
    assert types and set(types) == {"int8"}
    assert set(conv_input_types(out / "dped_mobile_dynamic-int8.tflite")) == {"float32"}


def test_int8_onnx_has_qdq_around_convolutions(exported):
    _, out = exported
    graph = onnx.load(str(out / "dped_mobile_int8.onnx")).graph
    producers = {o: n.op_type for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert convs and all(producers.get(n.input[0]) == "DequantizeLinear" for n in convs)
    assert all(producers.get(n.input[1]) == "DequantizeLinear" for n in convs)


def test_cli_exports_every_precision_of_a_target_with_a_summary(tmp_path, tiny_checkpoint, capsys):
    assert export_main(["--target", "onnx", "--precision", "all", "--checkpoint", str(tiny_checkpoint),
                        "--size", "64x64", "--calibration-count", "4", "--out", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    rows = [line.split() for line in table.splitlines() if line.startswith("onnx ") and ":" not in line.split()[1]]
    assert [r[1] for r in rows] == ["fp32", "fp16", "int8"] and all(r[2] == "ok" for r in rows)
    for precision in ("fp32", "fp16", "int8"):
        assert Sidecar.read(tmp_path / f"dped_mobile_{precision}.onnx.json").input.dynamic_dims == []  # fixed


def test_unsupported_combination_exits_2_listing_supported(capsys):
    assert export_main(["--target", "onnx", "--precision", "dynamic-int8"]) == 2
    assert "onnx: fp32, fp16, int8" in capsys.readouterr().err
    with pytest.raises(ValueError):
        resolve("tflite", "int4")


def test_calibration_from_a_folder_skips_unreadable_files(tmp_path):
    write_photo(tmp_path / "a.png", 30, 40)
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8broken")
    crops = calibration_images(tmp_path, (48, 48), count=3, progress=False)
    assert len(crops) == 3 and all(c.shape == (48, 48, 3) for c in crops)
    with pytest.raises(ValueError, match="not found"):
        calibration_images(tmp_path / "none", (8, 8))


def test_compressed_coreml_is_at_most_40_percent_of_fp32(exported):
    _, out = exported
    # The tiny test model's package is mostly program text; its weight blob is what compression shrinks.
    size = lambda p: sum(f.stat().st_size for f in p.rglob("weight.bin"))  # noqa: E731
    fp32 = size(out / "dped_mobile_fp32.mlpackage")
    summary = coreml.program_summary(out / "dped_mobile_int8.mlpackage")
    assert summary["compute_precision"] == "fp16" and summary["compression_ops"]
    assert coreml.program_summary(out / "dped_mobile_palettized.mlpackage")["compression_ops"]
    for precision in ("int8", "palettized"):
        assert size(out / f"dped_mobile_{precision}.mlpackage") <= 0.4 * fp32


def test_tensorrt_without_cuda_says_what_is_missing_and_can_prepare(tmp_path, tiny_checkpoint, capsys):
    if not tensorrt_missing():
        pytest.skip("this machine can build TensorRT engines")
    assert export_main(["--target", "tensorrt", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "CUDA GPU" in err and "Traceback" not in err
    assert export_main(["--target", "tensorrt", "--precision", "int8", "--trt-prepare", "--size", "64x64",
                        "--calibration-count", "2", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "dped_mobile_int8.trtexec.json").read_text())
    assert record["trtexec"].startswith("trtexec --onnx=dped_mobile_int8.trt.onnx") and "--int8" in record["trtexec"]
    assert np.load(tmp_path / "dped_mobile_int8.calibration.npy").shape == (2, 3, 64, 64)
    assert onnx.load(str(tmp_path / "dped_mobile_int8.trt.onnx")).graph.node


def test_quantize_cli_compresses_existing_float_artifacts(exported, tmp_path, capsys):
    from quantize.__main__ import main as quantize_main

    _, out = exported
    assert quantize_main([str(out / "dped_mobile_fp32.tflite"), "--precision", "dynamic-int8",
                          "--out", str(tmp_path / "q.tflite")]) == 0
    assert set(conv_input_types(tmp_path / "q.tflite")) == {"float32"}
    assert (tmp_path / "q.tflite").stat().st_size < (out / "dped_mobile_fp32.tflite").stat().st_size
    assert quantize_main([str(out / "dped_mobile_fp32.onnx"), "--precision", "int8", "--calibration-count", "2",
                          "--out", str(tmp_path / "q.onnx")]) == 0
    assert "fidelity" in capsys.readouterr().out
    assert quantize_main([str(out / "dped_mobile_fp32.onnx"), "--precision", "dynamic-int8"]) == 2
