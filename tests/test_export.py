import pytest
import torch

from artifacts import Sidecar, load
from artifacts.fidelity import psnr
from artifacts.runtimes.litert import embedded, op_names
from export.__main__ import main as export_main
from photos import load_image
from models import create_model
from tests.conftest import write_photo

pytestmark = pytest.mark.slow


def _reference(model, image):
    with torch.no_grad():
        return model(torch.from_numpy(image).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()


def test_tflite_round_trip_matches_pytorch_at_any_size(tmp_path, tiny_checkpoint):
    out = tmp_path / "exp"
    assert export_main(["--target", "tflite", "--checkpoint", str(tiny_checkpoint), "--out", str(out)]) == 0
    artifact, sidecar = out / "dped_mobile_fp32.tflite", Sidecar.read(out / "dped_mobile_fp32.json")
    assert sidecar.status == "ok" and sidecar.fidelity.psnr_db_min >= 60
    assert sidecar.input.layout == "NHWC" and sidecar.resizable and sidecar.input.dynamic_dims == [1, 2]
    assert sidecar.halo == 12  # width 8, one block: 1 + 8 + 4 + 4 + 8 = 25 px receptive field
    ops = op_names(artifact)
    assert "TRANSPOSE" not in ops and "CONV_2D" in ops and "DEPTHWISE_CONV_2D" in ops
    assert Sidecar.from_json(embedded(artifact)["dslr_mobile"]) == sidecar
    model = create_model("dped_mobile", checkpoint=tiny_checkpoint)
    run = load(artifact)
    for h, w in [(48, 64), (37, 51)]:  # photos it never saw, sizes other than the export size
        image = load_image(write_photo(tmp_path / f"p{h}.png", h, w, seed=h))
        assert psnr(run(image), _reference(model, image)) >= 60


def test_shipped_model_export_matches_at_480x640(tmp_path):
    out = tmp_path / "exp"
    assert export_main(["--target", "tflite", "--out", str(out)]) == 0
    image = load_image(write_photo(tmp_path / "p.png", 480, 640, seed=7))
    got = load(out / "dped_mobile_fp32.tflite")(image)
    assert psnr(got, _reference(create_model("dped_mobile", pretrained=True), image)) >= 60


def test_failed_gate_exits_1_and_leaves_nothing_that_looks_valid(tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "exp"
    code = export_main(["--target", "tflite", "--checkpoint", str(tiny_checkpoint), "--size", "32x32",
                        "--gate-db", "1000", "--out", str(out)])
    assert code == 1 and "failed its fidelity gate" in capsys.readouterr().err
    assert not list(out.glob("*.tflite")) and not (out / "dped_mobile_fp32.json").exists()
    assert (out / "dped_mobile_fp32.tflite.rejected").exists()


def test_fixed_size_export(tmp_path, tiny_checkpoint):
    out = tmp_path / "exp"
    assert export_main(["--target", "tflite", "--checkpoint", str(tiny_checkpoint), "--size", "40x56",
                        "--out", str(out)]) == 0
    sidecar = Sidecar.read(out / "dped_mobile_fp32.json")
    assert sidecar.input.shape == [1, 40, 56, 3] and not sidecar.resizable and sidecar.tile == 40
    # the held-out photos, clean and as a phone takes them, at the fixed size only
    assert [s.photo for s in sidecar.fidelity.samples] == \
        ["coffee@40x56", "rocket@40x56", "coffee:phone@40x56", "rocket:phone@40x56"]


@pytest.mark.parametrize("argv, needle", [
    (["--target", "tflite2"], "choose from: tflite, onnx"),
    (["--target", "tflite", "--model", "unet"], "dped_mobile"),
    (["--target", "tflite", "--precision", "fp8"], "supported: tflite: fp32, fp16"),
    (["--target", "tflite", "--size", "big"], "HxW"),
])
def test_usage_errors_exit_2_listing_choices(argv, needle, capsys):
    assert export_main(argv) == 2
    assert needle in capsys.readouterr().err


def test_output_and_calibration_folders_are_checked_before_any_work(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    assert export_main(["--target", "tflite", "--out", str(afile)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err and afile.read_text() == "mine"
    assert export_main(["--target", "tflite", "--precision", "int8", "--calibration", str(tmp_path / "none"),
                        "--out", str(tmp_path / "o")]) == 2
    assert "--calibration" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert export_main(["--target", "tflite", "--calibration-count", "0", "--out", str(tmp_path / "o")]) == 2


def test_bad_checkpoint_is_one_line_exit_1(tmp_path, capsys):
    bad = tmp_path / "x.pt"
    bad.write_text("{}")
    assert export_main(["--target", "tflite", "--checkpoint", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a PyTorch checkpoint" in err


def test_wide_separable_convs_become_the_dense_conv_they_equal():
    import torch

    from export.tflite import wide_separables_as_dense
    from models import create_model, fold_batchnorm
    from models.layers import SeparableConv2d

    model = fold_batchnorm(create_model("mdie", pretrained=True))
    dense = wide_separables_as_dense(model)
    wide = [n for n, m in model.named_modules() if isinstance(m, SeparableConv2d) and m.depthwise.kernel_size[0] >= 5]
    assert wide == ["generator.out.conv"]
    assert isinstance(dense.get_submodule("generator.out.conv"), torch.nn.Conv2d)
    assert isinstance(model.get_submodule("generator.out.conv"), SeparableConv2d)   # the caller's model untouched
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        assert (dense(x) - model(x)).abs().max() < 1e-5
