import numpy as np
import pytest
import torch
from PIL import Image

from enhance.__main__ import main as enhance_main
from artifacts.tiling import enhance_tiled, plan_tiles
from models import create_model, fold_batchnorm
from tests.conftest import save_checkpoint, write_photo


@pytest.fixture(scope="module")
def folded(tmp_path_factory):
    ckpt = save_checkpoint(tmp_path_factory.mktemp("m") / "c.pt", width=8, blocks=4)  # receptive field 37
    return fold_batchnorm(create_model("dped_mobile", checkpoint=ckpt))


def _fn(model):
    @torch.no_grad()
    def run(x):
        return model(torch.from_numpy(x).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    return run


@pytest.mark.parametrize("hw, tile", [((150, 233), 64), ((64, 64), 64), ((40, 300), 96), ((1, 1), 64), ((37, 5), 40)])
def test_tiled_equals_whole_image(folded, hw, tile):
    image = np.random.default_rng(0).random((*hw, 3), dtype=np.float32)
    whole = np.clip(_fn(folded)(image), 0, 1)
    tiled = enhance_tiled(image, _fn(folded), tile, folded.contract.halo)
    assert np.abs(tiled - whole).max() <= 1e-4


def test_plan_covers_every_pixel_once_in_row_major_order():
    plan = plan_tiles(100, 130, 48, 10)
    owned = np.zeros((100, 130), int)
    for t in plan:
        owned[t.oy:t.oy + t.oh, t.ox:t.ox + t.ow] += 1
        assert 0 <= t.wy <= t.oy and t.oy + t.oh <= t.wy + t.wh <= 100 and t.wh == 48 and t.ww == 48
    assert (owned == 1).all()
    assert [(t.oy, t.ox) for t in plan] == sorted((t.oy, t.ox) for t in plan)


def test_plan_rejects_tiles_without_a_core():
    with pytest.raises(ValueError, match="twice the halo"):
        plan_tiles(100, 100, 36, 18)
    with pytest.raises(ValueError, match="at least 1x1"):
        plan_tiles(0, 10, 64, 8)


def test_uint8_in_uint8_out(folded):
    image = (np.random.default_rng(1).random((70, 90, 3)) * 255).astype(np.uint8)
    out = enhance_tiled(image, _fn(folded), 48, folded.contract.halo)
    assert out.dtype == np.uint8 and out.shape == image.shape


def test_cli_enhances_odd_photos_and_reports_bad_ones(tmp_path, capsys):
    rgba = tmp_path / "rgba.png"
    Image.fromarray((np.random.default_rng(2).random((60, 80, 4)) * 255).astype(np.uint8)).save(rgba)
    gray16 = tmp_path / "gray16.png"
    Image.fromarray((np.random.default_rng(3).random((50, 70)) * 65535).astype(np.uint16)).save(gray16)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(write_photo(tmp_path / "ok.jpg").read_bytes()[:200])
    out = tmp_path / "out"
    code = enhance_main([str(rgba), str(gray16), str(broken), "-o", str(out), "--tile", "64",
                         "--postprocess", "he,gamma"])
    assert code == 1 and "broken.jpg" in capsys.readouterr().err
    assert Image.open(out / "rgba_enhanced.png").size == (80, 60)
    assert Image.open(out / "gray16_enhanced.png").mode == "RGB"


def test_cli_usage_errors(tmp_path, capsys):
    photo = write_photo(tmp_path / "p.png")
    assert enhance_main([str(photo), "-o", str(tmp_path / "o.png"), "--postprocess", "sharpen"]) == 2
    assert enhance_main([str(photo), "-o", str(tmp_path / "o.png"), "--model", "unet"]) == 2
    assert enhance_main([str(photo), "-o", str(tmp_path / "o.png"), "--tile", "30"]) == 1
    assert "twice the halo" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_runs_an_exported_artifact_like_the_model(tmp_path, tiny_checkpoint):
    from export.__main__ import main as export_main

    assert export_main(["--target", "tflite", "--checkpoint", str(tiny_checkpoint), "--size", "64x64",
                        "--out", str(tmp_path / "exp")]) == 0
    photo = write_photo(tmp_path / "p.png", 100, 150)
    assert enhance_main([str(photo), "-o", str(tmp_path / "a.png"), "--artifact",
                         str(tmp_path / "exp" / "dped_mobile_fp32.tflite")]) == 0
    assert enhance_main([str(photo), "-o", str(tmp_path / "b.png"), "--checkpoint", str(tiny_checkpoint),
                         "--tile", "64"]) == 0
    a, b = (np.asarray(Image.open(tmp_path / n), dtype=int) for n in ("a.png", "b.png"))
    assert np.abs(a - b).max() <= 1  # fixed 64x64 artifact tiles == PyTorch tiles, up to 8-bit rounding
