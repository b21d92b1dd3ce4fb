"""The image-adaptive global branch: the thumbnail, the conditioning, tiling, export with two inputs, training."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from artifacts import load
from artifacts.thumbnail import thumbnail
from artifacts.tiling import enhance_tiled
from models import create_model, fold_batchnorm
from models.globe import GlobalBranch, thumbnail_of, tone_curve
from tests.conftest import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 300), w=st.integers(1, 300), size=st.sampled_from([8, 32, 128]))
def test_thumbnail_is_pytorchs_adaptive_average_pool(h, w, size):
    image = np.random.default_rng(h * 1000 + w).random((h, w, 3), dtype=np.float32)
    ours = thumbnail(image, size)
    theirs = thumbnail_of(torch.from_numpy(image).permute(2, 0, 1)[None], size)[0].permute(1, 2, 0).numpy()
    assert ours.shape == (size, size, 3) and np.abs(ours - theirs).max() < 1e-5


def test_thumbnail_of_uint8_is_in_unit_range_and_of_a_constant_is_constant():
    assert np.allclose(thumbnail(np.full((37, 501, 3), 51, np.uint8), 16), 0.2)


def _branchy(tmp_path: Path, **overrides) -> Path:
    """A random checkpoint whose global branch is not the identity (its last layer is zero-initialised)."""
    path = save_checkpoint(tmp_path / "g.pt", global_branch=True, **overrides)
    ckpt = torch.load(path, weights_only=False)
    gen = torch.Generator().manual_seed(1)
    for key in ("globe.fc.2.weight", "globe.fc.2.bias"):
        ckpt["state_dict"][key] = torch.randn(ckpt["state_dict"][key].shape, generator=gen) * 0.3
    torch.save(ckpt, path)
    return path


def test_branch_starts_as_the_identity_of_the_local_network():
    torch.manual_seed(0)
    plain = create_model("dped_mobile", width=8, blocks=1).eval()
    adaptive = create_model("dped_mobile", width=8, blocks=1, global_branch=True).eval()
    adaptive.load_state_dict(plain.state_dict(), strict=False)
    x = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        assert torch.allclose(adaptive(x), plain(x), atol=1e-6)  # the curves at rest: x, up to float rounding


def test_curves_only_branch_has_no_feature_path():
    torch.manual_seed(0)
    plain = create_model("dped_mobile", width=8, blocks=1).eval()
    curves = create_model("dped_mobile", width=8, blocks=1, global_branch=True, global_film=False).eval()
    assert curves.globe.fc[-1].out_features == 12 and curves.globe(torch.rand(1, 3, 128, 128))[1] is None
    curves.load_state_dict(plain.state_dict(), strict=False)
    x = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        assert torch.allclose(curves(x), plain(x), atol=1e-6)  # the identity at first, as with the feature path


def test_shift_only_branch_shifts_the_features_and_leaves_the_stem_swappable():
    torch.manual_seed(0)
    plain = create_model("dped_mobile", width=8, blocks=1).eval()
    shift = create_model("dped_mobile", width=8, blocks=1, global_branch=True, film_scale=False).eval()
    _, scale, offset = shift.globe(torch.rand(1, 3, 128, 128))
    assert shift.globe.fc[-1].out_features == 12 + 8 and scale is None and offset.shape == (1, 8, 1, 1)
    shift.load_state_dict(plain.state_dict(), strict=False)
    x = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        assert torch.allclose(shift(x), plain(x), atol=1e-6)  # the identity at initialisation
    # a shift does not scale the stem's activation per photo: quantize.activations may swap it
    assert shift.modulated() == [] and create_model("dped_mobile", global_branch=True).modulated() == ["stem.act"]


def test_tone_curve_keeps_the_unit_range_and_can_brighten_and_darken():
    x = torch.linspace(0, 1, 101).reshape(1, 1, 1, 101).expand(1, 3, 1, 101)
    up, down = torch.full((1, 12), 3.0), torch.full((1, 12), -3.0)
    bright, dark = tone_curve(x, up), tone_curve(x, down)
    assert 0 <= float(dark.min()) and float(bright.max()) <= 1
    assert float(bright.mean()) > 0.9 > 0.1 > float(dark.mean())


def test_branch_output_depends_on_the_thumbnail_only():
    branch = GlobalBranch(8)
    torch.nn.init.normal_(branch.fc[-1].weight)
    a, b = torch.rand(2, 3, 128, 128), torch.rand(2, 3, 128, 128)
    curves_a = branch(a)[0]
    assert torch.equal(curves_a, branch(a)[0]) and not torch.equal(curves_a, branch(b)[0])


@pytest.mark.parametrize("hw, tile", [((150, 233), 64), ((300, 90), 96)])
def test_tiles_with_the_photos_thumbnail_equal_the_whole_image(tmp_path, hw, tile):
    model = fold_batchnorm(create_model("dped_mobile", checkpoint=_branchy(tmp_path, width=8, blocks=4,
                                                                           smooth=0.6)))
    image = np.random.default_rng(0).random((*hw, 3), dtype=np.float32)

    @torch.no_grad()
    def run(x, thumbnail=None):
        extra = [torch.from_numpy(thumbnail).permute(2, 0, 1)[None]] if thumbnail is not None else []
        return model(torch.from_numpy(x).permute(2, 0, 1)[None], *extra)[0].permute(1, 2, 0).numpy()

    whole = np.clip(run(image, thumbnail(image, 128)), 0, 1)
    tiled = enhance_tiled(image, run, tile, model.contract.halo, thumbnail=128)
    assert np.abs(tiled - whole).max() <= 1e-4
    # without the photo's thumbnail each tile would correct itself alone: visibly different
    alone = enhance_tiled(image, lambda x: run(x), tile, model.contract.halo)
    assert np.abs(alone - whole).max() > 1e-3


@pytest.fixture(scope="module")
def adaptive_exports(tmp_path_factory):
    from export.api import export_one
    from export.common import ExportSpec

    root = tmp_path_factory.mktemp("adaptive")
    ckpt = _branchy(root, width=8, blocks=1, smooth=0.6)  # the shipped dped_mobile's form: branch and smoothing
    written = {(t, p): export_one(ExportSpec(checkpoint=str(ckpt), target=t, precision=p, size=(64, 64),
                                             out=root / "out", calibration_count=2))
               for t, p in (("tflite", "fp32"), ("tflite", "int8"), ("onnx", "int8"), ("coreml", "fp16"))}
    return written, ckpt


def test_exported_files_take_the_thumbnail_and_say_so(adaptive_exports):
    written, _ = adaptive_exports
    for (target, precision), w in written.items():
        assert w.ok, (target, precision, w.sidecar.fidelity)
        t = w.sidecar.thumbnail
        assert t is not None and t.name == "thumbnail" and 128 in t.shape and t.dynamic_dims == []
        assert "cell means on a 128x128 grid" in w.sidecar.thumbnail_method
        # the contract checker compares both inputs with what the runtime reports
        proc = subprocess.run([sys.executable, "-m", "artifacts", str(w.artifact)], capture_output=True, text=True,
                              cwd=ROOT)
        problems = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert proc.returncode == 0 and not problems, problems
        assert "input  thumbnail" in proc.stdout


def test_exported_files_tile_like_pytorch_and_int8_is_fully_accelerated(adaptive_exports):
    from ai_edge_litert.compiled_model import CompiledModel

    from artifacts.runtimes import pytorch

    written, ckpt = adaptive_exports
    reference = pytorch.load("dped_mobile", checkpoint=str(ckpt))
    image = np.random.default_rng(3).random((90, 150, 3), dtype=np.float32)
    whole = reference(image, thumbnail(image, 128))
    for key in (("tflite", "fp32"), ("onnx", "int8"), ("tflite", "int8")):
        run, halo = load(written[key].artifact), written[key].sidecar.halo
        tiled = enhance_tiled(image, run, 64, halo, thumbnail=128)
        gap = np.abs(tiled - np.clip(whole, 0, 1)).max()
        assert gap <= (1e-4 if key[1] == "fp32" else 0.1), (key, gap)
        assert np.abs(run(image) - run(image, thumbnail=thumbnail(image, 128))).max() == 0  # default: its own
    assert CompiledModel.from_file(str(written[("tflite", "int8")].artifact)).is_fully_accelerated()


def test_int8_tflite_keeps_every_image_sized_op_integer_up_to_the_output(adaptive_exports):
    """The curves, the stem and the network run in int8 on the image: the only float ops on image-sized tensors
    follow the one DEQUANTIZE of the image before the output clip and smoothing; float elsewhere is on the per-photo
    curve parameters (3 values each)."""
    from ai_edge_litert.interpreter import Interpreter

    written, _ = adaptive_exports
    interpreter = Interpreter(str(written[("tflite", "int8")].artifact))
    details = interpreter.get_tensor_details()
    ops = interpreter._get_ops_details()  # noqa: SLF001 - LiteRT's only listing

    def image_sized(i: int) -> bool:
        shape = details[i]["shape"]
        return len(shape) == 4 and sorted(shape[1:])[-2:] == [64, 64]  # NHWC or NCHW, the 64x64 export size

    def floats(op) -> bool:
        return any(details[i]["dtype"].__name__ == "float32" and image_sized(i)
                   for i in [*op["inputs"], *op["outputs"]] if i >= 0)

    image_dequantize = [k for k, op in enumerate(ops) if op["op_name"] == "DEQUANTIZE" and image_sized(op["inputs"][0])]
    assert len(image_dequantize) == 1, image_dequantize  # the curves once took the image out of int8 and back
    last = image_dequantize[0]
    assert not any(floats(op) for op in ops[:last]), [op["op_name"] for op in ops[:last] if floats(op)]
    assert {"AVERAGE_POOL_2D", "SUB", "RELU"} <= {op["op_name"] for op in ops[last:]}


def test_enhance_command_uses_the_whole_photos_thumbnail(adaptive_exports, tmp_path):
    from PIL import Image

    from tests.conftest import write_photo

    written, ckpt = adaptive_exports
    src = write_photo(tmp_path / "p.png", 120, 200)
    outs = []
    for extra in (["--checkpoint", str(ckpt)], ["--artifact", str(written[("tflite", "fp32")].artifact)]):
        dst = tmp_path / f"out{len(outs)}.png"
        proc = subprocess.run([sys.executable, "-m", "enhance", str(src), "-o", str(dst), "--tile", "64", *extra],
                              capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-500:]
        outs.append(np.asarray(Image.open(dst), dtype=np.int16))
    assert np.abs(outs[0] - outs[1]).max() <= 1


def test_training_with_the_branch_on_wide_degradations(tmp_path):
    from train.data import draw_patch, fresh_degradations
    from train.dped import DPEDTrainConfig, train_dped

    pairs = fresh_degradations("wide")
    rng = lambda: np.random.default_rng([5, 0, 1])  # noqa: E731
    a, b, t = draw_patch(pairs, 32, rng(), thumb=16)
    assert a.shape == b.shape == (32, 32, 3) and t.shape == (16, 16, 3)
    assert all(np.array_equal(u, v) for u, v in zip((a, b, t), draw_patch(pairs, 32, rng(), thumb=16)))

    summary = train_dped(DPEDTrainConfig(steps=2, batch=2, patch=32, val_every=2, val_count=1, val_crop=64,
                                         global_branch=True, degradation="wide", init="dped_mobile",
                                         out=str(tmp_path / "run"), threads=1), progress=False)
    assert summary["validation"]["psnr"] > 0
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert ckpt["config"]["global_branch"] is True
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["degradation"] == "wide" and config["init"] == "dped_mobile"


def test_freeze_local_trains_the_branch_alone(tmp_path):
    from models.registry import WEIGHTS_DIR
    from train.dped import DPEDTrainConfig, train_dped

    train_dped(DPEDTrainConfig(steps=2, batch=2, patch=32, val_every=2, val_count=1, val_crop=64, global_branch=True,
                               freeze_local=True, degradation="wide", init="dped_mobile", w_texture=0.0,
                               out=str(tmp_path / "run"), threads=1), progress=False)
    shipped = torch.load(WEIGHTS_DIR / "dped_mobile.pt", weights_only=False)["state_dict"]
    trained = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["state_dict"]
    local = [k for k in trained if not k.startswith("globe.") and k in shipped]
    assert local and all(torch.equal(trained[k].float(), shipped[k].float()) for k in local)  # BN stats included
    key = "globe.fc.2.weight"  # the branch moved from where it started (the shipped branch, or zeros)
    assert not torch.equal(trained[key].float(), shipped.get(key, torch.zeros_like(trained[key])).float())


@pytest.mark.parametrize("argv, needle", [
    (["--freeze-local"], "--freeze-local trains the global branch alone"),
    (["--curves-only"], "--curves-only shapes the global branch: it needs --global-branch"),
    (["--global-branch", "--curves-only", "--shift-only"], "--shift-only shapes the global branch's feature path"),
    (["--degradation", "sunny"], "--degradation 'sunny': known: camera, wide, camera+wide"),
    (["--degradation", "wide", "--data", "."], "--degradation applies to the built-in photos"),
    (["--init", "nope.pt"], "--init nope.pt: neither a model"),
])
def test_bad_training_options_are_one_line(argv, needle):
    proc = subprocess.run([sys.executable, "-m", "train", "dped", "--steps", "1", *argv], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-400:]


def test_int8_onnx_keeps_the_branchs_fully_connected_layers_in_float_and_the_rest_int8(adaptive_exports):
    """quantize.onnx.FLOAT_OPS: the global branch's Gemms (one vector per photo) read float weights; every conv reads
    its weights through a DequantizeLinear, and sensitivity and --float-layers do not list the Gemms."""
    import onnx

    from quantize.onnx import quantizable_layers

    written, _ = adaptive_exports
    path = written[("onnx", "int8")].artifact
    graph = onnx.load(str(path)).graph
    producers = {o: n.op_type for n in graph.node for o in n.output}
    initializers = {i.name for i in graph.initializer}
    gemms = [n for n in graph.node if n.op_type == "Gemm"]
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert gemms and all(n.input[1] in initializers for n in gemms)  # float weights, no DequantizeLinear
    assert convs and all(producers.get(n.input[1]) == "DequantizeLinear" for n in convs)
    assert not any(kind == "Gemm" for kind in quantizable_layers(path, op_types=True).values())
