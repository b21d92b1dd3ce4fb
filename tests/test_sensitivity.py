"""Per-layer int8 sensitivity, calibration methods and mixed precision (ONNX through onnxruntime.quantization)."""
import json

import onnx
import pytest

from artifacts import TARGETS, Sidecar
from quantize.onnx import layer_of
from quantize.sensitivity_cli import main as sensitivity_main


def float_convs(path) -> set[str]:
    """Names of the Conv nodes of an ONNX file that run in float: their weights are not an int8 tensor behind a
    DequantizeLinear."""
    graph = onnx.load(str(path)).graph
    producer = {o: n.op_type for n in graph.node for o in n.output}
    return {n.name for n in graph.node if n.op_type == "Conv" and producer.get(n.input[1]) != "DequantizeLinear"}


def test_layer_names_follow_the_pytorch_modules():
    assert layer_of("/blocks/blocks.0/body/body.0/conv/depthwise/Conv", "Conv") == "blocks.0.body.0.conv.depthwise"
    assert layer_of("/stem/conv/Conv", "Conv") == "stem.conv"
    assert layer_of("/blocks/blocks.0/Add", "Add") == "blocks.0:Add"
    assert layer_of("/stem/act/LeakyRelu", "LeakyRelu") == "stem.act:LeakyRelu"
    assert layer_of("/Sub_1", "Sub") == "Sub_1"


def test_calibration_methods_come_from_the_target_table(capsys, exported):
    assert TARGETS["onnx"].precision("int8").methods[0] == "percentile"
    assert TARGETS["tflite"].precision("int8").methods == ("histogram", "minmax", "qat")
    from export.__main__ import main as export_main

    assert export_main(["--target", "tflite", "--precision", "int8", "--calibration-method", "entropy"]) == 2
    assert "tflite int8 takes histogram, minmax, qat" in capsys.readouterr().err
    assert export_main(["--target", "onnx", "--precision", "int8", "--calibration-method", "qat"]) == 2
    assert "onnx int8 takes percentile, minmax" in capsys.readouterr().err
    assert export_main(["--target", "tflite", "--precision", "int8", "--calibration-method", "qat",
                        "--qat-steps", "0"]) == 2
    assert "--qat-steps must be a positive integer" in capsys.readouterr().err
    assert export_main(["--target", "tflite", "--precision", "fp16", "--fidelity-target", "40"]) == 2
    assert "int8 can" in capsys.readouterr().err
    written, _ = exported
    assert written[("onnx", "int8")].sidecar.calibration.method == "percentile"
    assert written[("tflite", "int8")].sidecar.calibration.method == "histogram"


@pytest.mark.slow
def test_sensitivity_report_and_mixed_precision_the_runtime_confirms(tmp_path, exported, capsys):
    written, _ = exported
    fp32 = written[("onnx", "fp32")].artifact
    out = tmp_path / "report"
    assert sensitivity_main([str(fp32), "--out", str(out), "--calibration-count", "2", "--threads", "1",
                             "--calibration-method", "minmax"]) == 0
    report = json.loads((out / "sensitivity.json").read_text())
    assert (out / "sensitivity.md").read_text().count("\n| `") == len(report["layers"])
    assert (out / "sensitivity.png").read_bytes()[:4] == b"\x89PNG"
    layers = report["layers"]
    names = {r["layer"] for r in layers}
    assert {"stem.conv", "out.conv"} <= names and any(":" in n for n in names)  # convs and the ops between them
    only = [float("inf") if r["only_int8_db"] is None else r["only_int8_db"] for r in layers]  # null: exact
    assert only == sorted(only)  # most sensitive first
    assert report["trials"] == 1 + 2 * len(layers)
    convs = [r for r in layers if r["op"] == "Conv"]
    assert all(r["channel_absmax_max"] >= r["channel_absmax_min"] > 0 for r in convs)
    assert all(r["output_max"] >= r["output_min"] for r in layers if "output_max" in r)

    # The same quantizer, the same numbers: python -m quantize with the same method measures what the trials did.
    from quantize.__main__ import main as quantize_main

    full = tmp_path / "full.onnx"
    assert quantize_main([str(fp32), "--precision", "int8", "--calibration-method", "minmax", "--calibration-count",
                          "2", "--out", str(full)]) == 0
    measured = Sidecar.read(TARGETS["onnx"].sidecar_path(full)).fidelity.psnr_db_min
    assert measured == pytest.approx(report["all_int8_db"], abs=0.011)  # the gate's own measure

    # Mixed precision: the two most sensitive convs in float; the sidecar names them and the file holds them in
    # float while every other conv stays int8.
    keep = [r["layer"] for r in convs[:2]]
    mixed = tmp_path / "mixed.onnx"
    assert quantize_main([str(fp32), "--precision", "int8", "--float-layers", ",".join(keep), "--calibration-count",
                          "2", "--out", str(mixed)]) == 0
    sidecar = Sidecar.read(TARGETS["onnx"].sidecar_path(mixed))
    assert sidecar.calibration.float_layers == keep and sidecar.calibration.method == "percentile"
    cost = sidecar.calibration.float_cost  # against the same file all in int8, which is not left behind
    assert cost.int8_bytes > 0 and cost.extra_bytes > 0 and cost.int8_ms > 0  # two float convs: 4x their bytes
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]
    assert Sidecar.read(TARGETS["onnx"].sidecar_path(full)).calibration.float_cost is None
    from quantize.onnx import quantizable_layers

    nodes = quantizable_layers(fp32)
    assert float_convs(mixed) == {nodes[k] for k in keep}
    assert float_convs(full) == set()


@pytest.mark.slow
def test_quantization_aware_fine_tuning_exports_a_gated_int8_tflite(tmp_path):
    from export.__main__ import main as export_main

    assert export_main(["--target", "tflite", "--model", "dped_mobile_s", "--precision", "int8", "--calibration-method",
                        "qat", "--qat-steps", "3", "--size", "64x64", "--calibration-count", "1",
                        "--out", str(tmp_path)]) == 0
    sidecar = Sidecar.read(tmp_path / "dped_mobile_s_int8.json")
    assert sidecar.calibration.method == "qat" and sidecar.calibration.qat_steps == 3
    assert sidecar.fidelity.passed and sidecar.fidelity.psnr_db_min >= 35


def test_qat_starts_from_the_ptq_ranges():
    """With no step taken, QAT's graph is the PTQ recipe's: the same histogram ranges, frozen."""
    import numpy as np
    import torch

    from models import create_model, fold_batchnorm
    from photos.samples import sample_photo
    from quantize import tflite as recipes

    class NHWC(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, image):
            return self.net(image.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    module = NHWC(fold_batchnorm(create_model("dped_mobile_s", pretrained=True))).eval()
    photo = np.array(sample_photo("coffee")[:48, :48])
    calib = [{"image": torch.from_numpy(np.array(sample_photo("chelsea")[:48, :48]))[None]}]
    test = {"image": torch.from_numpy(photo)[None]}
    ptq, _ = recipes.pt2e_int8(module, calib[0], calib)
    qat, _, losses = recipes.pt2e_qat(module, calib[0], calib, calib, steps=0)
    with torch.no_grad():
        ref, a, b = module(**test), ptq(**test), qat(**test)
    psnr = lambda x: float(10 * torch.log10(1 / ((x - ref) ** 2).mean()))  # noqa: E731
    assert losses == [] and abs(psnr(a) - psnr(b)) < 0.5
    # fine-tuning trains a copy: the caller's float weights (the gate's reference) stay as they were
    before = {k: v.clone() for k, v in module.state_dict().items()}
    recipes.pt2e_qat(module, calib[0], calib, calib, steps=2, lr=1e-2)
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


# --- weight-side methods (quantize.weights) --------------------------------------------------------------------

def _dped_mobile_folded():
    import torch

    from models import create_model, fold_batchnorm

    torch.manual_seed(0)
    return fold_batchnorm(create_model("dped_mobile", pretrained=True))


def test_cross_layer_equalization_keeps_the_function_and_equalizes_the_pairs():
    import numpy as np
    import torch

    from quantize.weights import _input_ranges, apply, pairs

    folded = _dped_mobile_folded()
    found = pairs(folded)
    # per block: two separable pairs and the pair across the LeakyReLU between the two layers; the tail likewise,
    # and the tail's last layer with the output layer; never the stem (its output feeds the residual stream)
    assert len(found) == 4 * 3 + 3 + 1 and folded.stem.conv not in {a for a, _ in found}
    image = np.random.default_rng(0).random((64, 64, 3), dtype=np.float32)
    equalized = apply(folded, ("cle",), [image], thumbnail_size=folded.config.thumbnail)
    x = torch.from_numpy(image.transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        assert (equalized(x) - folded(x)).abs().max() < 1e-4
    for a, b in pairs(equalized):
        r1, r2 = a.weight.abs().flatten(1).amax(1), _input_ranges(b)
        assert torch.allclose(r1, r2, rtol=1e-2)
    assert all(p.data_ptr() != q.data_ptr() for p, q in zip(folded.parameters(), equalized.parameters()))


def test_smoothquant_keeps_the_function_and_balances_activations_against_weights():
    """SmoothQuant's scaling: the float output is unchanged and the widest activation spread of the shipped
    dped_mobile narrows. On a lone pair, each channel's activation and weight ranges end balanced
    (a^alpha / w^(1 - alpha) alike), so that a second pass finds nothing to move."""
    import numpy as np
    import torch

    from models.layers import SeparableConv2d
    from quantize.calibration import model_inputs
    from quantize.weights import SMOOTH_ALPHA, _input_ranges, _inputs_seen, apply, pairs

    def ranges(model, feeds):  # per pair: the activation's largest value per channel
        convs = [b for _, b in pairs(model)]
        seen = _inputs_seen(model, convs, feeds, keep=lambda x: x.abs().amax((0, 2, 3)))
        return [torch.stack(seen[b]).amax(0) for b in convs]

    folded = _dped_mobile_folded()
    images = [np.random.default_rng(i).random((64, 64, 3), dtype=np.float32) for i in range(2)]
    feeds = model_inputs(images)
    smoothed = apply(folded, ("smoothquant",), images)
    with torch.no_grad():
        assert (smoothed(*feeds[0]) - folded(*feeds[0])).abs().max() < 1e-4
    widest = lambda model: max(float(r.max() / r.median()) for r in ranges(model, feeds))  # noqa: E731
    assert widest(smoothed) < widest(folded)
    assert all(p.data_ptr() != q.data_ptr() for p, q in zip(folded.parameters(), smoothed.parameters()))

    torch.manual_seed(0)
    pair = SeparableConv2d(3, 4, 3).eval()
    with torch.no_grad():
        pair.depthwise.weight.mul_(torch.tensor([0.1, 1.0, 20.0]).view(3, 1, 1, 1))  # one channel 200x another
    once = apply(pair, ("smoothquant",), images)
    (a, b), = pairs(once)
    (r,) = ranges(once, feeds)
    balance = r ** SMOOTH_ALPHA / _input_ranges(b) ** (1 - SMOOTH_ALPHA)
    assert torch.allclose(balance, balance.mean().expand_as(balance), rtol=1e-3)
    twice = apply(once, ("smoothquant",), images)
    assert torch.allclose(twice.pointwise.weight, once.pointwise.weight, rtol=1e-4)
    (before,), (after,) = ranges(pair, feeds), ranges(once, feeds)
    assert float(after.max() / after.min()) < float(before.max() / before.min()) / 3   # 296 -> 72


def test_bias_correction_removes_the_mean_shift_of_int8_weights():
    import torch
    from torch import nn

    from quantize.weights import correct_bias, fake_int8

    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, 3, padding=1)
    x = torch.rand(4, 8, 32, 32) + 0.5                        # a positive mean, as after a ReLU
    with torch.no_grad():
        conv.weight.mul_(torch.linspace(0.1, 10, 8).view(1, 8, 1, 1))  # a few inputs dominate the range
        reference = conv(x)[..., 1:-1, 1:-1].mean(dim=(0, 2, 3))
        quantized = nn.Conv2d(8, 8, 3, padding=1)
        quantized.load_state_dict(conv.state_dict())
        correct_bias(quantized, [(x,)])
        quantized.weight.copy_(fake_int8(quantized.weight))
        plain = nn.functional.conv2d(x, fake_int8(conv.weight), conv.bias, padding=1)[..., 1:-1, 1:-1]
        before = (plain.mean(dim=(0, 2, 3)) - reference).abs().max()
        after = (quantized(x)[..., 1:-1, 1:-1].mean(dim=(0, 2, 3)) - reference).abs().max()
    assert after < before / 10


def test_export_records_weight_methods_and_rejects_bad_ones(tmp_path, tiny_checkpoint, capsys):
    from export.__main__ import main as export_main

    # a small random network: what is checked is the sidecar, not a shipped model's fidelity at 64x64 (the shipped
    # dped_mobile, calibrated on two 64x64 images, misses its gate: 27 dB)
    assert export_main(["--target", "onnx", "--precision", "int8", "--size", "64x64", "--calibration-count", "2",
                        "--checkpoint", str(tiny_checkpoint), "--weight-methods", "cle,bias-correction",
                        "--out", str(tmp_path)]) == 0
    calibration = Sidecar.read(tmp_path / "dped_mobile_int8.onnx.json").calibration
    assert calibration.weight_methods == ["cle", "bias-correction"]
    assert export_main(["--target", "onnx", "--precision", "int8", "--weight-methods", "gptq",
                        "--out", str(tmp_path)]) == 2
    assert "--weight-methods gptq: choose from cle, smoothquant, adaround, bias-correction" in capsys.readouterr().err
    assert export_main(["--target", "onnx", "--precision", "fp32", "--weight-methods", "cle",
                        "--out", str(tmp_path)]) == 2
    assert "not a calibrated int8 precision" in capsys.readouterr().err


def test_adaround_rounds_on_the_int8_grid_and_beats_rounding_to_nearest():
    import torch
    from torch import nn

    from quantize.weights import adaround_weight, fake_int8

    torch.manual_seed(0)
    conv = nn.Conv2d(16, 16, 3, padding=1)
    x = torch.relu(torch.randn(8, 16, 24, 24))
    learned = adaround_weight(conv, x, steps=300)
    assert torch.equal(fake_int8(learned), learned)            # on the grid the converters round to
    assert torch.allclose(learned.abs().flatten(1).amax(1), conv.weight.abs().flatten(1).amax(1))  # same scale
    assert (learned - conv.weight).abs().max() <= conv.weight.abs().max() / 127 * (1 + 1e-5)   # up or down only
    with torch.no_grad():
        reference = conv(x)
        error = lambda w: (nn.functional.conv2d(x, w, conv.bias, padding=1) - reference).pow(2).mean()  # noqa: E731
        assert error(learned) < 0.95 * error(fake_int8(conv.weight))


@pytest.mark.slow
def test_tflite_keeps_the_named_layers_in_float_and_the_rest_int8(tmp_path, tiny_checkpoint, capsys):
    """--float-layers on int8 TFLite: the named modules' ops run in float, every other conv in int8, the sidecar
    lists them, and XNNPACK still takes the whole graph."""
    import torch
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.interpreter import Interpreter

    from export.__main__ import main as export_main

    def convs(path):
        graph = Interpreter(model_path=str(path))
        dtype = {t["index"]: t["dtype"].__name__ for t in graph.get_tensor_details()}
        return [dtype[op["inputs"][1]] for op in graph._get_ops_details()  # noqa: SLF001 - LiteRT's only listing
                if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]

    common = ["--target", "tflite", "--checkpoint", str(tiny_checkpoint), "--precision", "int8", "--size", "64x64",
              "--calibration-count", "2"]
    assert export_main([*common, "--out", str(tmp_path / "all")]) == 0
    assert export_main([*common, "--float-layers", "out,tail.1.act:LeakyRelu", "--out", str(tmp_path / "mixed")]) == 0
    sidecar = Sidecar.read(tmp_path / "mixed" / "dped_mobile_int8.json")
    assert sidecar.calibration.float_layers == ["out", "tail.1.act:LeakyRelu"] and sidecar.fidelity.passed
    # what they cost: the same file all in int8, converted beside it, timed alternately, then removed
    cost = sidecar.calibration.float_cost
    assert cost.size == [64, 64] and cost.runs == 7 and cost.int8_ms > 0 and cost.extra_ms > -cost.int8_ms
    assert cost.int8_bytes > 0 and cost.extra_bytes > 0  # float weights take four times the bytes
    assert "against all-int8's" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "mixed").iterdir()) == ["dped_mobile_int8.json",
                                                                       "dped_mobile_int8.tflite"]
    assert Sidecar.read(tmp_path / "all" / "dped_mobile_int8.json").calibration.float_cost is None
    # a LeakyReLU named to stay in float is never swapped for a ReLU; --keep-leaky-relu swaps none
    from quantize.activations import MIN_DB

    swapped = Sidecar.read(tmp_path / "all" / "dped_mobile_int8.json").calibration
    assert "tail.1.act" in swapped.relu_layers and swapped.relu_min_db == MIN_DB
    assert "tail.1.act" not in sidecar.calibration.relu_layers
    assert export_main([*common, "--keep-leaky-relu", "--out", str(tmp_path / "leaky")]) == 0
    kept = Sidecar.read(tmp_path / "leaky" / "dped_mobile_int8.json").calibration
    assert kept.relu_layers == [] and kept.relu_min_db == 0
    path = tmp_path / "mixed" / "dped_mobile_int8.tflite"
    every, mixed = convs(tmp_path / "all" / "dped_mobile_int8.tflite"), convs(path)
    weights = torch.load(tiny_checkpoint, weights_only=True)["state_dict"]
    out_convs = sum(1 for name in weights if name.startswith("out.") and name.endswith(".weight"))
    assert set(every) == {"int8"} and len(mixed) == len(every)
    assert mixed.count("float32") == out_convs and mixed[-out_convs:] == ["float32"] * out_convs  # the last layer
    assert CompiledModel.from_file(str(path)).is_fully_accelerated()
    capsys.readouterr()
    assert export_main([*common, "--float-layers", "tail.9", "--out", str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err
    assert "--float-layers tail.9: no such layer" in err and "tail.1.act" in err and "Traceback" not in err


@pytest.mark.slow
def test_tflite_sensitivity_ranks_layers_and_its_choice_reaches_the_target_once_converted(tmp_path, tiny_checkpoint,
                                                                                        capsys):
    """python -m quantize sensitivity --target tflite: PT2E's graph run in PyTorch with pairs removed. The layer it
    chooses for --fidelity-target, exported for real with --float-layers, passes the same target in the gate."""
    from export.__main__ import main as export_main

    out = tmp_path / "report"
    common = ["--model", "dped_mobile", "--checkpoint", str(tiny_checkpoint), "--size", "64x64",
              "--calibration-count", "2", "--threads", "1"]
    assert sensitivity_main([*common, "--out", str(out)]) == 0
    report = json.loads((out / "sensitivity.json").read_text())
    layers = report["layers"]
    assert "PT2E" in report["quantizer"] and report["trials"] == 1 + 2 * len(layers)
    names = [r["layer"] for r in layers]
    assert {"stem.conv", "out.conv", ":Add"} <= set(names) and any(":" in n for n in names)
    only = [float("inf") if r["only_int8_db"] is None else r["only_int8_db"] for r in layers]
    assert only == sorted(only)  # most sensitive first
    assert all(r["channel_absmax_max"] >= r["channel_absmax_min"] > 0 for r in layers if r["op"] == "Conv")
    # floating a layer floats what follows it: all but the first layer in float is close to float
    assert max(r["all_but_it_int8_db"] or float("inf") for r in layers) > report["all_int8_db"]

    target = round(report["all_int8_db"] + 3, 1)
    assert sensitivity_main([*common, "--out", str(out), "--fidelity-target", str(target)]) == 0
    chosen = json.loads((out / "sensitivity.json").read_text())["mixed_precision"]
    assert chosen["fidelity_db"] >= target and len(chosen["float_layers"]) == 1
    assert f"--float-layers {chosen['float_layers'][0]}" in capsys.readouterr().out

    # the export's own search: the same choice, then converted and gated for real
    assert export_main(["--target", "tflite", "--checkpoint", str(tiny_checkpoint), "--precision", "int8",
                        "--size", "64x64", "--calibration-count", "2", "--fidelity-target", str(target),
                        "--out", str(tmp_path / "mixed")]) == 0
    sidecar = Sidecar.read(tmp_path / "mixed" / "dped_mobile_int8.json")
    assert sidecar.calibration.float_layers == chosen["float_layers"]
    assert sidecar.fidelity.passed and sidecar.fidelity.gate_db == target  # the converted file reached it
    assert sidecar.fidelity.psnr_db_min >= target

    capsys.readouterr()
    assert sensitivity_main(["--model", "no_such_model"]) == 2
    assert "no_such_model" in capsys.readouterr().err
    bogus = tmp_path / "m.tflite"
    bogus.write_bytes(b"x")
    assert sensitivity_main([str(bogus)]) == 2
    assert "--target tflite" in capsys.readouterr().err
    assert sensitivity_main(["--model", "dped_mobile", "--size", "63x64"]) == 2  # the phased output conv
    assert "needs multiples of 2" in capsys.readouterr().err


def test_sensitivity_report_says_what_the_leaky_relu_swap_costs_against_the_unchanged_model(tmp_path, capsys):
    """The trials measure against the float model as the int8 export quantizes it (LeakyReLUs as ReLUs), the export's
    gate against the unchanged model: the report gives the swap's own fidelity, which a direct measurement repeats."""
    import torch

    from artifacts.fidelity import fidelity_inputs, psnr
    from export.common import torch_reference
    from models import create_model
    from quantize.activations import with_relus

    out = tmp_path / "report"
    assert sensitivity_main(["--model", "dped_mobile_s", "--target", "tflite", "--size", "64x64",
                             "--calibration-count", "2", "--threads", "1", "--out", str(out)]) == 0
    swap = json.loads((out / "sensitivity.json").read_text())["relu_swap"]
    assert swap["layers"] and swap["floor_db"] == 48.0  # the shipped weights: their LeakyReLUs measure harmless
    model = create_model("dped_mobile_s", pretrained=True).eval()
    swapped = with_relus(model, swap["layers"]).eval()
    with torch.no_grad():
        direct = min(psnr(torch_reference(swapped, x), torch_reference(model, x))
                     for _, x in fidelity_inputs((64, 64), resizable=False))
    assert abs(swap["vs_unchanged_db"] - direct) < 0.05
    said = f"{swap['vs_unchanged_db']} dB against the unchanged model"
    assert said in capsys.readouterr().out and said in (out / "sensitivity.md").read_text()


def test_a_float_layer_feeding_a_concat_keeps_the_concat_float(tmp_path):
    """The converter makes a concat with one int8 input int8 and quantizes its float inputs on that input's scale;
    so the quantizer floats the concat's other feeders too, and the float branch keeps its negative values."""
    import litert_torch
    import numpy as np
    import torch
    from ai_edge_litert.interpreter import Interpreter
    from torch import nn

    from quantize import tflite as recipes

    class Skip(nn.Module):  # a U-Net's join: a decoder branch (signed) and a skip (after a ReLU: non-negative)
        def __init__(self):
            super().__init__()
            self.a, self.b, self.out = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(3, 8, 1), nn.Conv2d(16, 3, 1)

        def forward(self, image):
            x = image.permute(0, 3, 1, 2)
            return self.out(torch.cat([self.a(x), torch.relu(self.b(x))], 1)).permute(0, 2, 3, 1)

    torch.manual_seed(0)
    module = Skip().eval()
    sample = {"image": torch.rand(1, 16, 16, 3)}
    quantized, config = recipes.pt2e_int8(module, sample, [sample], float_layers=("a",))
    path = tmp_path / "skip.tflite"
    litert_torch.signature("serving_default", quantized, sample_kwargs=sample).convert(quant_config=config) \
        .export(str(path))
    graph = Interpreter(model_path=str(path))
    dtype = {t["index"]: t["dtype"].__name__ for t in graph.get_tensor_details()}
    concat = [op for op in graph._get_ops_details() if op["op_name"] == "CONCATENATION"]  # noqa: SLF001
    assert len(concat) == 1 and {dtype[i] for i in concat[0]["inputs"]} == {"float32"}
    runner = graph.get_signature_runner()
    out = next(iter(runner(image=sample["image"].numpy()).values()))
    with torch.no_grad():
        ref = module(**sample).numpy()
    assert np.abs(out - ref).max() < 0.02 * np.abs(ref).max()  # int8 elsewhere; nothing clipped at the join


@pytest.mark.slow
def test_fidelity_target_converts_the_next_choice_when_the_first_falls_short(tmp_path, tiny_checkpoint, monkeypatch,
                                                                            capsys):
    import export.tflite as backend
    from export.__main__ import main as export_main

    choices = [[":Relu"], ["stem.conv"]]  # the output clip alone (about all-int8), then the whole network
    monkeypatch.setattr(backend, "choose_float_layers", lambda *args, **kwargs: choices)
    assert export_main(["--target", "tflite", "--checkpoint", str(tiny_checkpoint), "--precision", "int8", "--size",
                        "64x64", "--calibration-count", "2", "--fidelity-target", "70", "--out", str(tmp_path)]) == 0
    assert "--float-layers :Relu: " in capsys.readouterr().err
    sidecar = Sidecar.read(tmp_path / "dped_mobile_int8.json")
    assert sidecar.calibration.float_layers == ["stem.conv"] and sidecar.fidelity.psnr_db_min >= 70


def test_leaky_relus_become_relus_only_where_their_slope_is_measured_harmless():
    """quantize.activations: a LeakyReLU whose input is never negative is a ReLU already; one whose negative side
    the next layer amplifies is kept."""
    import numpy as np
    import torch
    from torch import nn

    from quantize import activations

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.pos, self.neg = nn.LeakyReLU(0.005), nn.LeakyReLU(0.005)

        def forward(self, x):
            return self.pos(x) + 100 * self.neg(-x)   # x in [0, 1]: pos sees no negative value, neg only those

    images = [np.random.default_rng(i).random((32, 32, 3), dtype=np.float32) for i in range(2)]
    assert activations.choose(Two(), images) == ["pos"]
    x = torch.rand(1, 3, 8, 8)
    swapped = activations.with_relus(Two(), ["pos"])
    assert isinstance(swapped.pos, nn.ReLU) and torch.equal(swapped(x), Two()(x))
    assert not torch.equal(activations.with_relus(Two(), ["neg"])(x), Two()(x))
    with pytest.raises(ValueError, match="not a LeakyReLU"):
        activations.with_relus(nn.Sequential(nn.ReLU()), ["0"])
    assert activations.choose(Two(), images, keep=["pos:LeakyRelu"]) == []   # what --float-layers names stays
    assert activations.in_layers("tail.1.act", ["tail.1"]) and not activations.in_layers("tail.10.act", ["tail.1"])
    # the activation a global branch scales per photo is never swapped (its range follows the photo's gain)
    from models import create_model

    adaptive = create_model("dped_mobile", width=8, blocks=1, global_branch=True).eval()
    assert adaptive.modulated() == ["stem.act"] and create_model("dped", width=8, blocks=1).modulated() == []
    photos = [np.random.default_rng(i).random((160, 160, 3), dtype=np.float32) for i in range(2)]
    chosen = activations.choose(adaptive, photos, thumbnail_size=adaptive.config.thumbnail, floor_db=0)
    assert "stem.act" not in chosen and "tail.1.act" in chosen
    assert activations.min_db(None) == activations.MIN_DB and activations.min_db(50) == 50 + activations.MARGIN_DB


def test_onnx_fidelity_search_measures_what_the_gate_measures(tmp_path, tiny_checkpoint):
    """The ONNX search scores its trials on the gate's photos against the gate's reference (the unchanged model), so
    the fidelity it predicts for its choice is the fidelity the converted file gates at."""
    from export.api import export_one
    from export.common import ExportSpec

    said: list[str] = []
    spec = ExportSpec(checkpoint=str(tiny_checkpoint), target="onnx", precision="int8", size=(64, 64), out=tmp_path,
                      calibration_count=2, fidelity_target=60.0)
    written = export_one(spec, progress=said.append)
    steps = [float(line.split(": ")[-1].split(" dB")[0]) for line in said if "dB" in line and ": " in line]
    assert len(steps) >= 2  # all int8, then at least one layer floated
    assert abs(steps[-1] - written.sidecar.fidelity.psnr_db_min) <= 0.05, (said, written.sidecar.fidelity)
    cost = written.sidecar.calibration.float_cost  # against the same file all in int8, which is not left behind
    assert cost.int8_bytes > 0 and cost.int8_ms > 0 and cost.threads >= 1
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["dped_mobile_int8.onnx", "dped_mobile_int8.onnx.json", "tiny.pt"]


def test_tflite_fidelity_search_measures_what_the_gate_measures(tmp_path, tiny_checkpoint):
    """The TFLite search (PT2E's graph run in PyTorch) scores against the gate's reference, the unchanged model:
    the fidelity it predicts for the layer it chooses is, within the int8 kernels' rounding, the file's gate."""
    from export.api import export_one
    from export.common import ExportSpec

    said: list[str] = []
    spec = ExportSpec(checkpoint=str(tiny_checkpoint), target="tflite", precision="int8", size=(64, 64),
                      out=tmp_path, calibration_count=2, fidelity_target=65.0)
    written = export_one(spec, progress=said.append)
    (layer,) = written.sidecar.calibration.float_layers
    (line,) = [line for line in said if line.startswith(f"{layer} and what follows it in float")]
    predicted = float(line.split("): ")[1].split(" dB")[0])
    assert abs(predicted - written.sidecar.fidelity.psnr_db_min) <= 0.5, (said, written.sidecar.fidelity)


def test_the_tflite_search_aims_where_the_converted_file_says():
    """The simulation's target moves by the converted all-int8 file's offset from it: a converter that rounds 1.5
    dB better than PT2E's graph in PyTorch lets a later layer (less of the network in float) reach the target. The
    choices that float the fewest layers are tried first, so a late layer that reaches the target is found even
    where the fidelity is not monotone in where the float part starts."""
    from quantize.sensitivity_tflite import choose_float_suffix, float_suffix_candidates

    class Fake:  # floating layer i floats it and all after it; fidelity rises toward the start
        layers = ["l0", "l1", "l2", "l3"]
        table = {"l0": 50.0, "l1": 44.0, "l2": 42.0, "l3": 41.0}

        def fidelity(self, float_layers=()):
            return self.table[float_layers[0]] if float_layers else 40.0

        def floated_layers(self, layers):
            return self.layers[self.layers.index(layers[0]):]

    assert choose_float_suffix(Fake(), 45.0)[0] == ["l0"]
    assert choose_float_suffix(Fake(), 45.0, converted_db=41.5)[0] == ["l1"]  # aims at 43.5 dB simulated
    assert float_suffix_candidates(Fake(), 45.0, converted_db=41.5) == [["l1"], ["l0"]]  # l0: the last resort
    assert float_suffix_candidates(Fake(), 45.0) == [["l0"]]

    class Bumpy(Fake):  # not monotone: a late layer reaches the target, the middle ones do not
        layers = ["l0", "l1", "l2", "l3", "l4", "l5"]
        table = {"l0": 50.0, "l1": 44.0, "l2": 44.0, "l3": 44.0, "l4": 46.0, "l5": 41.0}

    # the fewest floated layers first: l5, then l4 (bisection alone would land on l0, the whole network)
    layers, reached, steps = choose_float_suffix(Bumpy(), 45.0)
    assert layers == ["l4"] and reached == 46.0 and [s["float_layers"] for s in steps] == [[], ["l5"], ["l4"]]
    assert choose_float_suffix(Bumpy(), 45.0, scan=1)[0] == ["l0"]  # past the scan: bisection


def test_a_target_the_all_int8_file_reaches_needs_no_search(tmp_path, tiny_checkpoint, monkeypatch):
    """--fidelity-target: the all-int8 file is converted and gated first; one that reaches the target is the answer,
    with nothing in float and no search."""
    import export.onnx as backend
    from export.api import export_one
    from export.common import ExportSpec

    def no_search(*args, **kwargs):
        raise AssertionError("searched although the all-int8 file reaches the target")

    monkeypatch.setattr(backend, "choose_float_layers", no_search)
    said: list[str] = []
    spec = ExportSpec(checkpoint=str(tiny_checkpoint), target="onnx", precision="int8", size=(64, 64), out=tmp_path,
                      calibration_count=2, fidelity_target=20.0)
    written = export_one(spec, progress=said.append)
    assert written.ok and written.sidecar.calibration.float_layers == [] and written.sidecar.fidelity.gate_db == 20
    assert written.sidecar.calibration.float_cost is None and any("all layers int8" in line for line in said)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["dped_mobile_int8.onnx", "dped_mobile_int8.onnx.json", "tiny.pt"]


def test_the_fidelity_search_takes_the_best_free_recipe_that_reaches_the_target(tmp_path, tiny_checkpoint,
                                                                               monkeypatch):
    """--fidelity-target without --weight-methods: after the plain all-int8 file, each recipe of FREE_RECIPES all in
    int8 (free at run time); the best that reaches the target is taken, with no search. If none does, the search
    floats layers of the plain file. With --weight-methods given, nothing is added. No temporary file is left."""
    import export.api
    import export.onnx as backend
    from export.api import export_one
    from export.common import ExportSpec

    searched: list[tuple[str, ...]] = []

    def choose(model, spec, *args, **kwargs):
        searched.append(spec.weight_methods)
        return [["stem.conv"]]

    monkeypatch.setattr(backend, "choose_float_layers", choose)

    def tried(said: list[str]) -> dict[str, float]:
        return {line.split("--weight-methods ")[1].split(":")[0]: float(line.split(": ")[-1].split(" dB")[0])
                for line in said if "--weight-methods" in line}

    # mdie at 64x64 on 2 crops: 38.8 dB all-int8, 40.0 dB with cle, 40.4 dB with smoothquant; with cle tried
    # first, the better one is still taken (at this target the default floor is the search's: no second plain file)
    monkeypatch.setattr(export.api, "FREE_RECIPES", ((), ("cle",), ("smoothquant",), ("bias-correction",)))
    said: list[str] = []
    written = export_one(ExportSpec(model="mdie", target="onnx", precision="int8", size=(64, 64), out=tmp_path / "m",
                                    calibration_count=2, fidelity_target=39.6), progress=said.append)
    scores = tried(said)
    assert list(scores) == ["cle", "smoothquant", "bias-correction"] and searched == []
    best = max(scores, key=scores.get)
    assert best == "smoothquant" and scores["cle"] >= 39.6, scores
    calibration = written.sidecar.calibration
    assert written.ok and written.sidecar.fidelity.psnr_db_min == scores[best] and calibration.float_layers == []
    assert calibration.weight_methods == best.split(",") and calibration.relu_min_db == 48.0
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["mdie_int8.onnx", "mdie_int8.onnx.json"]

    for asked in ((), ("bias-correction",)):  # 99 dB: nothing reaches it; rejected, as a file that says what it tried
        said.clear()
        spec = ExportSpec(checkpoint=str(tiny_checkpoint), target="onnx", precision="int8", size=(64, 64),
                          out=tmp_path / ("asked" if asked else "none"), calibration_count=2, fidelity_target=99.0,
                          weight_methods=asked)
        written = export_one(spec, progress=said.append)
        assert list(tried(said)) == ([] if asked else ["(none)", "cle", "smoothquant", "bias-correction"])
        assert written.sidecar.calibration.weight_methods == list(asked) and searched[-1] == asked
        assert not written.ok and written.sidecar.calibration.float_layers == ["stem.conv"]
        assert sorted(p.name for p in spec.out.iterdir()) == ["dped_mobile_int8.onnx.rejected",
                                                              "dped_mobile_int8.rejected.onnx.json"]


def test_a_free_recipe_that_cannot_rescale_the_model_is_skipped(tmp_path, tiny_checkpoint, monkeypatch):
    """A weight-side method that refuses a model (quantize.weights: a conv output used beyond its pair) costs the
    search that recipe only: one line says why, and the others and the search go on."""
    import export.onnx as backend
    import quantize.weights
    from export.api import export_one
    from export.common import ExportSpec

    apply = quantize.weights.apply

    def refuse_cle(model, methods, *args, **kwargs):
        if "cle" in methods:
            raise ValueError("cross-layer equalization changed DPED's output")
        return apply(model, methods, *args, **kwargs)

    monkeypatch.setattr(quantize.weights, "apply", refuse_cle)
    monkeypatch.setattr(backend, "choose_float_layers", lambda *args, **kwargs: [["stem.conv"]])
    said: list[str] = []
    written = export_one(ExportSpec(checkpoint=str(tiny_checkpoint), target="onnx", precision="int8", size=(64, 64),
                                    out=tmp_path / "out", calibration_count=2, fidelity_target=99.0),
                         progress=said.append)
    assert "--weight-methods cle skipped: cross-layer equalization changed DPED's output" in said
    assert any("--weight-methods bias-correction: " in line for line in said)
    assert written.sidecar.calibration.float_layers == ["stem.conv"]
