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
    # integer end to end: the input is int8 (no QUANTIZE), every op up to the one DEQUANTIZE before the output clip
    # is int8 (LeakyReLU and the residual adds included), and only the clip's few ops run in float after it
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(out / "dped_mobile_int8.tflite"))
    dtype = {t["index"]: t["dtype"].__name__ for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    names = [op["op_name"] for op in ops]
    assert "QUANTIZE" not in names and names.count("DEQUANTIZE") == 1
    before = ops[:names.index("DEQUANTIZE")]
    assert {"CONV_2D", "ADD"} <= {op["op_name"] for op in before}
    # the LeakyReLUs the sidecar lists as ReLUs are fused into their convs; the others are still LEAKY_RELU ops
    from torch import nn

    from models import create_model

    model = create_model("dped_mobile", checkpoint=out.parent / "tiny.pt")
    leaky = sum(isinstance(m, nn.LeakyReLU) for m in model.modules())
    relus = Sidecar.read(out / "dped_mobile_int8.json").calibration.relu_layers
    assert names.count("LEAKY_RELU") == leaky - len(relus) and "RELU" not in names[:names.index("DEQUANTIZE")]
    assert all(dtype[i] in ("int8", "int32") for op in before for i in [*op["inputs"], *op["outputs"]] if i >= 0)
    assert {op["op_name"] for op in ops[names.index("DEQUANTIZE") + 1:]} <= {"SUB", "RELU", "MINIMUM", "MAXIMUM"}
    assert Sidecar.read(out / "dped_mobile_int8.json").input.dtype == "int8"


def test_int8_onnx_has_qdq_around_convolutions(exported):
    _, out = exported
    graph = onnx.load(str(out / "dped_mobile_int8.onnx")).graph
    producers = {o: n.op_type for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert convs and all(producers.get(n.input[0]) == "DequantizeLinear" for n in convs)
    # the LeakyReLUs the sidecar lists as ReLUs are gone (onnxruntime's quantizer folds a Relu after a Conv into
    # the range of its QuantizeLinear), the others are LeakyRelu nodes
    relus = Sidecar.read(out / "dped_mobile_int8.onnx.json").calibration.relu_layers
    kinds = [n.op_type for n in graph.node]
    from torch import nn

    from models import create_model

    leaky = sum(isinstance(m, nn.LeakyReLU) for m in create_model("dped_mobile", checkpoint=out.parent / "tiny.pt")
                .modules())
    assert relus and kinds.count("LeakyRelu") == leaky - len(relus)
    assert all(producers.get(n.input[1]) == "DequantizeLinear" for n in convs)
    # and ONNX Runtime's own optimizer makes every one of them a QLinearConv, the residual adds QLinearAdd: no
    # convolution is left in float for want of a fusable QDQ group (int8 activations left the stem and each block's
    # first conv in float on x86, where ORT fuses only uint8 activations with int8 weights)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(out / "optimized.onnx")
    ort.InferenceSession(str(out / "dped_mobile_int8.onnx"), options, providers=["CPUExecutionProvider"])
    optimized = [n.op_type for n in onnx.load(str(out / "optimized.onnx")).graph.node]
    (out / "optimized.onnx").unlink()
    assert "Conv" not in optimized and optimized.count("QLinearConv") == len(convs)
    assert "QLinearAdd" in optimized and "Add" not in optimized


def test_int8_weight_integers_span_what_the_sidecar_says(exported):
    """The weights' integer range in the file is the sidecar's weight_qmax: 127 (8-bit weights) in both targets."""
    from ai_edge_litert.interpreter import Interpreter
    from onnx import numpy_helper

    _, out = exported
    graph = onnx.load(str(out / "dped_mobile_int8.onnx")).graph
    producers = {o: n for n in graph.node for o in n.output}
    initializers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    onnx_weights = [initializers[producers[n.input[1]].input[0]] for n in graph.node if n.op_type == "Conv"]
    interpreter = Interpreter(str(out / "dped_mobile_int8.tflite"))
    details = {t["index"]: t for t in interpreter.get_tensor_details()}
    tflite_weights = [interpreter.get_tensor(op["inputs"][1]) for op in interpreter._get_ops_details()
                      if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")
                      and details[op["inputs"][1]]["dtype"].__name__ == "int8"]
    for name, weights in (("dped_mobile_int8.onnx.json", onnx_weights), ("dped_mobile_int8.json", tflite_weights)):
        qmax = Sidecar.read(out / name).calibration.weight_qmax
        assert weights and qmax == max(int(np.abs(w.astype(np.int32)).max()) for w in weights), name
    assert Sidecar.read(out / "dped_mobile_int8.onnx.json").calibration.weight_qmax == 127


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


def test_onnx_calibration_reads_one_image_at_a_time(exported, tmp_path):
    """The ONNX quantizer calibrates in onnxruntime's strides of one image (each merged before the next, so memory
    stays at one image's activations): its reader has a length and ranges, and with MinMax the strided ranges are
    the ranges of all images at once."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    from quantize.onnx import calibration_reader, preprocess

    written, _ = exported
    pre = tmp_path / "pre.onnx"
    preprocess(written[("onnx", "fp32")].artifact, pre)
    images = [np.full((64, 64, 3), v, np.float32) for v in (0.1, 0.9, 0.5)]
    reader = calibration_reader(pre, images)
    assert len(reader) == 3
    reader.set_range(1, 2)
    assert np.allclose(reader.get_next()["image"], 0.9) and reader.get_next() is None

    def ranges(strided: bool) -> dict:
        calibrator = create_calibrator(pre, augmented_model_path=str(tmp_path / f"aug{strided}.onnx"),
                                       calibrate_method=CalibrationMethod.MinMax)
        reader = calibration_reader(pre, images)
        for start in range(len(images)) if strided else [0]:
            reader.set_range(start, start + 1 if strided else len(images))
            calibrator.collect_data(reader)
        found = calibrator.compute_data().data
        return {k: np.concatenate([np.ravel(x) for x in v.range_value]) for k, v in found.items()}

    strided, at_once = ranges(strided=True), ranges(strided=False)
    assert strided.keys() == at_once.keys() and all(np.allclose(strided[k], at_once[k]) for k in strided)


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
    import shutil

    from enhance.__main__ import main as enhance_main
    from quantize.__main__ import main as quantize_main
    from tests.conftest import write_photo

    _, out = exported
    for name in ("dped_mobile_fp32.tflite", "dped_mobile_fp32.json", "dped_mobile_fp32.onnx",
                 "dped_mobile_fp32.onnx.json", "dped_mobile_int8.tflite", "dped_mobile_int8.json"):
        shutil.copy(out / name, tmp_path / name)
    src = tmp_path / "dped_mobile_fp32.tflite"
    assert quantize_main([str(src), "--precision", "dynamic-int8"]) == 0
    made = tmp_path / "dped_mobile_dynamic-int8.tflite"
    assert set(conv_input_types(made)) == {"float32"} and made.stat().st_size < src.stat().st_size
    sidecar = Sidecar.read(tmp_path / "dped_mobile_dynamic-int8.json")
    assert sidecar.precision == "dynamic-int8" and sidecar.fidelity.passed and sidecar.resizable
    assert sidecar.fidelity.reference == "the source artifact dped_mobile_fp32.tflite"
    photo = write_photo(tmp_path / "p.png", 50, 70)  # enhance takes what quantize wrote, through its sidecar
    assert enhance_main([str(photo), "-o", str(tmp_path / "o.png"), "--artifact", str(made)]) == 0

    assert quantize_main([str(tmp_path / "dped_mobile_fp32.onnx"), "--precision", "int8", "--calibration-count",
                          "2", "--out", str(tmp_path / "q.onnx")]) == 0
    assert "fidelity" in capsys.readouterr().out
    assert Sidecar.read(tmp_path / "q.onnx.json").calibration.count == 2
    # nothing overwritten unless asked; no file compared with itself; no re-quantizing a quantized file
    before = made.read_bytes()
    assert quantize_main([str(src), "--precision", "dynamic-int8"]) == 2
    assert "--force" in capsys.readouterr().err and made.read_bytes() == before
    assert quantize_main([str(src), "--precision", "fp16", "--out", str(src)]) == 2
    assert "source artifact itself" in capsys.readouterr().err
    assert quantize_main([str(src), "--precision", "fp16", "--out", str(tmp_path / "x.onnx")]) == 2
    assert "must end in .tflite" in capsys.readouterr().err
    assert quantize_main([str(tmp_path / "dped_mobile_int8.tflite"), "--precision", "fp16"]) == 2
    assert "already int8" in capsys.readouterr().err
    assert quantize_main([str(tmp_path / "dped_mobile_fp32.onnx"), "--precision", "dynamic-int8"]) == 2
    assert not list(tmp_path.glob(".*partial*"))


def test_python_m_artifacts_reports_the_contract_and_what_breaks_it(exported, tmp_path, capsys):
    import shutil

    from artifacts.__main__ import main as artifacts_main

    _, out = exported
    for name in ("dped_mobile_int8.tflite", "dped_mobile_int8.json", "dped_mobile_fp16.onnx",
                 "dped_mobile_fp16.onnx.json"):
        shutil.copy(out / name, tmp_path / name)
    assert artifacts_main([str(tmp_path / "dped_mobile_int8.tflite")]) == 0
    assert artifacts_main([str(tmp_path / "dped_mobile_fp16.onnx")]) == 0
    assert "dynamic [2, 3] float32" in capsys.readouterr().out
    data = json.loads((tmp_path / "dped_mobile_int8.json").read_text())
    data["halo"] += 1
    data["input"]["dtype"] = "int8"
    data["input"]["quantization"] = {"scale": 0.5, "zero_point": 0}
    (tmp_path / "dped_mobile_int8.json").write_text(json.dumps(data))
    (tmp_path / "dped_mobile_int8.tflite").rename(tmp_path / "moved_int8.tflite")  # travels alone: still knows
    assert artifacts_main([str(tmp_path / "moved_int8.tflite")]) == 0
    (tmp_path / "moved_int8.tflite").rename(tmp_path / "dped_mobile_int8.tflite")
    assert artifacts_main([str(tmp_path / "dped_mobile_int8.tflite")]) == 1
    assert "differs from the embedded one in: input, halo" in capsys.readouterr().err


def test_a_wide_conv_to_few_channels_is_exported_as_its_four_phases():
    """DPED's 9x9 output conv (64 -> 3) runs in XNNPACK at a fifth of its conv tile; the TFLite export computes it
    as a stride-2 conv with 12 outputs and a pixel shuffle, which equals it on even sizes."""
    import torch
    from torch import nn

    from export.tflite import as_converted, few_outputs_as_phases, size_multiple
    from models import create_model

    torch.manual_seed(0)
    head = nn.Sequential(nn.Conv2d(64, 3, 9, padding=4))
    phased = few_outputs_as_phases(head)
    assert [type(m).__name__ for m in phased.modules()].count("ConvTranspose2d") == 1
    assert phased[0][0].stride == (2, 2) and phased[0][0].out_channels == 12
    for h, w in ((2, 2), (10, 14), (64, 96)):
        x = torch.randn(1, 64, h, w)
        with torch.no_grad():
            assert torch.allclose(phased(x), head(x), atol=1e-5, rtol=0), (h, w)
    for kept in (nn.Conv2d(8, 3, 9, padding=4), nn.Conv2d(64, 16, 9, padding=4), nn.Conv2d(64, 3, 3, padding=1),
                 nn.Conv2d(64, 3, 9, padding=0)):  # few inputs, many outputs, narrow, not SAME: left as they are
        assert isinstance(few_outputs_as_phases(nn.Sequential(kept))[0], nn.Conv2d)
    model = create_model("dped_mobile", pretrained=True).eval()
    assert size_multiple(model) == 2 and model.contract.size_multiple == 1
    x = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        assert torch.allclose(as_converted(model)(x), model(x), atol=1e-5, rtol=0)


def test_onnx_sessions_ask_for_exact_int8_kernels_where_the_default_ones_saturate(exported, monkeypatch):
    """8-bit ONNX weights are safe only where ONNX Runtime avoids its saturating U8S8 kernels (x86 without VNNI): the
    loader's session, which the gate, enhance and the benchmark use, carries ``session.x64quantprecision`` there
    and nowhere else (it costs time where the kernels are exact)."""
    from artifacts.runtimes import onnxruntime as runtime

    _, out = exported
    entry = {}
    for saturating in (True, False):
        monkeypatch.setattr(runtime, "saturating_int8", lambda: saturating)
        options = runtime.open_session(out / "dped_mobile_int8.onnx", threads=1).get_session_options()
        try:
            entry[saturating] = options.get_session_config_entry(runtime.PRECISE_INT8)
        except RuntimeError:  # no such entry
            entry[saturating] = None
    assert entry == {True: "1", False: None}


def test_a_graph_the_precise_mode_cannot_take_opens_without_it(exported, monkeypatch):
    """ONNX Runtime 1.32 refuses the precise mode on mdie's graph at session start: the session opens without it.
    Where the default kernels are exact, a failure is not retried."""
    import onnxruntime as ort

    from artifacts.runtimes import onnxruntime as runtime

    _, out = exported
    real, tried = ort.InferenceSession, []

    def refusing(path, options, **kwargs):
        try:
            precise = options.get_session_config_entry(runtime.PRECISE_INT8) == "1"
        except RuntimeError:
            precise = False
        tried.append(precise)
        if precise:
            raise RuntimeError("Attempt to replace the existing tensor")
        return real(path, options, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", refusing)
    monkeypatch.setattr(runtime, "saturating_int8", lambda: True)
    assert runtime.open_session(out / "dped_mobile_int8.onnx", threads=1) is not None and tried == [True, False]
    tried.clear()
    monkeypatch.setattr(runtime, "saturating_int8", lambda: False)

    def broken(path, options, **kwargs):
        tried.append(path)
        raise RuntimeError("corrupt")

    monkeypatch.setattr(ort, "InferenceSession", broken)
    with pytest.raises(RuntimeError, match="corrupt"):
        runtime.open_session(out / "dped_mobile_int8.onnx")
    assert len(tried) == 1


def test_x86_without_vnni_counts_as_saturating():
    from artifacts.runtimes.onnxruntime import saturating_cpu

    assert saturating_cpu("x86_64", "processor : 0\nflags : fma avx2 avx512f avx512bw\n")
    assert not saturating_cpu("x86_64", "flags : avx2 avx512f avx512_vnni\n")
    assert not saturating_cpu("AMD64", "flags : avx2 avx_vnni\n")
    assert saturating_cpu("x86_64", None)  # flags unreadable: the safe side
    assert not saturating_cpu("aarch64", None) and not saturating_cpu("arm64", "")


def test_train_evaluate_scores_an_artifact_against_the_fp32_model_it_was_made_from(exported, capsys):
    from train.__main__ import main as train_main
    from train.evaluate import evaluate_model

    _, out = exported
    ckpt = str(out.parent / "tiny.pt")
    reports = {}
    for name in ("dped_mobile_fp32.onnx", "dped_mobile_int8.tflite"):
        assert train_main(["evaluate", "--artifact", str(out / name), "--checkpoint", ckpt]) == 0
        reports[name] = json.loads(capsys.readouterr().out)
    fp32 = evaluate_model("dped_mobile", ckpt)
    for name, report in reports.items():
        assert report["model"] == "dped_mobile" and report["precision"] == name.split("_")[-1].split(".")[0]
        for key in ("validation", "unseen_degradation", "night_degradation"):
            r = report[key]
            assert r["photos"] == len(fp32[key]["photos"])
            assert abs(r["fp32_psnr"] - fp32[key]["mean"]["output_psnr"]) <= 0.011  # its rounding
            assert abs(r["psnr_drop_db"] - (r["fp32_psnr"] - r["artifact_psnr"])) <= 0.002
    for key in ("validation", "unseen_degradation", "night_degradation"):  # the float file is the model itself
        assert abs(reports["dped_mobile_fp32.onnx"][key]["psnr_drop_db"]) < 0.005
        assert reports["dped_mobile_fp32.onnx"][key]["fidelity_db"] >= 60
        assert 30 < reports["dped_mobile_int8.tflite"][key]["fidelity_db"] < 60
    # the shipped dped_mobile is not what these files were made from: one line, exit 1
    assert train_main(["evaluate", "--artifact", str(out / "dped_mobile_int8.tflite")]) == 1
    err = capsys.readouterr().err
    assert "made from other weights" in err and len(err.strip().splitlines()) == 1
