import pytest
import torch

from models import (CheckpointError, TextureDiscriminator, conv_macs_per_pixel, create_model, fold_batchnorm,
                    list_models, pretrained_models)
from tests.conftest import save_checkpoint


SMALL = {"dped": {"width": 8, "blocks": 1}, "dped_mobile": {"width": 8, "blocks": 1},
         "mdie_generator": {"width": 8, "blocks": 1}, "mdie": {"width": 4, "generator_width": 8, "blocks": 1}}


@pytest.mark.parametrize("name", list_models())
def test_every_model_maps_images_to_images(name):
    model = create_model(name, **SMALL.get(name, {"width": 4}))
    assert not model.training
    x = torch.rand(2, model.contract.channels, 23, 31)  # odd sizes: any H x W
    y = model(x)
    ys = y if isinstance(y, tuple) else (y,)
    assert len(ys) == len(model.contract.outputs)
    for out, (_, channels) in zip(ys, model.contract.outputs):
        assert out.shape == (2, channels, 23, 31) and torch.isfinite(out).all()
        assert out.min() >= 0 and out.max() <= 1
    assert model.contract.layout == "NCHW" and model.contract.value_range == (0.0, 1.0)


def test_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match="dped_mobile"):
        create_model("dped_turbo")


def test_separable_variant_is_cheaper_and_receptive_field_is_37():
    full, mobile = create_model("dped"), create_model("dped_mobile")
    assert conv_macs_per_pixel(mobile) * 5 < conv_macs_per_pixel(full)
    assert full.contract.receptive_field == mobile.contract.receptive_field == 37
    assert isinstance(mobile.stem.conv, torch.nn.Conv2d)          # stem stays a full conv
    assert mobile.blocks[0].body[0].conv.depthwise.groups == 64   # the rest is depthwise + pointwise


@pytest.mark.parametrize("form", ["separable", "full", "pointwise_first"])
def test_every_output_layer_form_keeps_the_9x9_reach_and_exact_clip(form, tmp_path):
    model = create_model("dped_mobile", width=8, blocks=1, out_layer=form)
    impulse = torch.zeros(1, 3, 41, 41, requires_grad=True)
    model(impulse)[0, :, 20, 20].sum().backward()
    rows = impulse.grad.abs().sum(dim=(0, 1, 3)).nonzero()
    assert int(rows.max() - rows.min() + 1) == model.contract.receptive_field == 25
    x = torch.randn(1000) * 3  # clip_unit is clamp(0, 1), bit for bit
    from models.layers import clip_unit

    assert torch.equal(clip_unit(x), torch.clamp(x, 0.0, 1.0))
    # a checkpoint whose config predates out_layer loads as the separable form it was trained with
    ckpt = save_checkpoint(tmp_path / "old.pt", width=8, blocks=1, out_layer="separable")
    data = torch.load(ckpt, weights_only=True)
    del data["config"]["out_layer"]
    torch.save(data, ckpt)
    assert create_model("dped_mobile", checkpoint=ckpt).config.out_layer == "separable"


def test_fold_batchnorm_keeps_the_function(tmp_path):
    model = create_model("dped_mobile", checkpoint=save_checkpoint(tmp_path / "c.pt", width=8, blocks=2))
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(1, 3, 40, 40)
    assert torch.allclose(model(x), folded(x), atol=1e-5)


@pytest.mark.parametrize("name", ["dped", "dped_mobile", "dped_mobile_s", "intrinsic_decomposer",
                                  "intrinsic_decomposer_mobile", "intrinsic_composer_mobile", "mdie"])
def test_shipped_weights_load_offline(name):
    assert name in pretrained_models()
    model = create_model(name, pretrained=True)
    with torch.no_grad():
        y = model(torch.rand(1, model.contract.channels, 32, 32))
    assert all(torch.isfinite(t).all() for t in (y if isinstance(y, tuple) else (y,)))


def test_checkpoint_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        create_model("dped_mobile", checkpoint=bad)
    ckpt = save_checkpoint(tmp_path / "mobile.pt", width=8, blocks=1)
    with pytest.raises(CheckpointError, match="holds weights for 'dped_mobile'"):
        create_model("dped", checkpoint=ckpt)
    wrong = torch.load(ckpt, weights_only=True)
    wrong["config"]["width"] = 16  # state dict no longer fits the config
    torch.save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match="does not match") as err:
        create_model("dped_mobile", checkpoint=tmp_path / "wrong.pt")
    assert "\n" not in str(err.value)


def test_texture_discriminator_takes_gray_patches_of_any_size():
    d = TextureDiscriminator(width=8).eval()
    assert d(torch.rand(3, 1, 100, 100)).shape == (3,)
    assert d(torch.rand(2, 1, 64, 48)).shape == (2,)


@pytest.mark.parametrize("blocks, smooth", [(0, 0.0), (2, 0.0), (2, 0.6)])
def test_stated_receptive_field_is_the_real_one(blocks, smooth):
    model = create_model("dped", width=4, blocks=blocks, head="tanh", smooth=smooth)
    x = torch.rand(1, 3, 81, 81)
    bumped = x.clone()
    bumped[0, :, 40, 40] += 0.5
    with torch.no_grad():
        changed = (model(bumped) - model(x)).abs().sum(dim=(0, 1)) > 0
    rows = changed.any(dim=1).nonzero().flatten()
    assert int(rows.max() - rows.min()) + 1 == model.contract.receptive_field


def test_the_small_dped_mobile_is_half_width_and_records_its_teacher():
    model = create_model("dped_mobile_s", pretrained=True)
    assert model.config.width == 32 and model.config.out_layer == "full"
    assert conv_macs_per_pixel(model) * 2 < conv_macs_per_pixel(create_model("dped_mobile"))
    from models.registry import WEIGHTS_DIR, load_checkpoint

    assert load_checkpoint(WEIGHTS_DIR / "dped_mobile_s.pt")["meta"]["teacher"] == "dped_mobile"


def test_smoothing_keeps_flat_fields_flat_to_the_border_and_the_unit_range():
    from hypothesis import given, settings, strategies as st

    from models.layers import Smoothing

    @settings(max_examples=25, deadline=None)
    @given(st.floats(0.01, 1.0), st.floats(0.0, 1.0), st.integers(1, 9), st.integers(1, 9))
    def check(weight, level, h, w):
        smooth = Smoothing(weight)
        assert torch.allclose(smooth(torch.full((1, 3, h, w), level)), torch.tensor(level), atol=1e-6)
        x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(h * 10 + w))
        y = smooth(x)
        assert float(y.min()) >= 0 and float(y.max()) <= 1

    check()
    # a bright dot spreads to its 8 neighbours by weight / 9 (fewer neighbours at the border: weight / 4 in a corner)
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = x[0, 0, 0, 0] = 1.0
    y = Smoothing(0.6)(x)[0, 0]
    assert torch.isclose(y[2, 2], torch.tensor(0.4 + 0.6 / 9)) and torch.isclose(y[1, 2], torch.tensor(0.6 / 9))
    assert torch.isclose(y[0, 0], torch.tensor(0.4 + 0.6 / 4))
    with pytest.raises(ValueError, match="smooth"):
        create_model("dped_mobile", smooth=1.5)


def test_shipped_dped_mobile_smooths_its_output_and_the_paper_networks_do_not():
    assert create_model("dped_mobile", pretrained=True).config.smooth > 0
    assert create_model("dped", pretrained=True).config.smooth == 0 == create_model("dped_mobile").config.smooth
