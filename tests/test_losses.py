import pytest
import torch

from train import losses


@pytest.fixture
def pair():
    torch.manual_seed(0)
    a = torch.rand(2, 3, 32, 32)
    return a, (a + 0.1 * torch.randn_like(a)).clamp(0, 1)


def test_color_loss_ignores_fine_detail_but_not_colour(pair):
    a, b = pair
    assert losses.color_loss(a, a) == 0
    shifted = (a + 0.2).clamp(0, 1)
    assert losses.color_loss(a, shifted) > 10 * losses.color_loss(a, b)  # noise mostly blurs away


def test_tv_loss_is_zero_on_flat_images(pair):
    a, _ = pair
    assert losses.tv_loss(torch.full_like(a, 0.3)) == 0
    assert losses.tv_loss(a) > 0


def test_texture_and_discriminator_losses(pair):
    confident_real = torch.full((4,), 10.0)
    assert losses.texture_loss(confident_real) < 1e-3
    assert losses.texture_loss(-confident_real) > 30          # summed over the batch, as DPED does
    assert losses.discriminator_loss(confident_real, -confident_real) < 1e-3
    gray = losses.grayscale(pair[0])
    assert gray.shape == (2, 1, 32, 32)


def test_ssim_substitute_content_loss(pair):
    a, b = pair
    assert losses.ssim_content_loss(a, a).abs() < 1e-5
    assert 0 < losses.ssim_content_loss(a, torch.rand_like(a)) <= 2
    a.requires_grad_(True)
    losses.ssim_content_loss(a, b).backward()
    assert torch.isfinite(a.grad).all()


def test_vgg_content_loss_reads_a_torchvision_state_dict(tmp_path, pair):
    from models.vgg import LAYOUT

    # build a state dict with torchvision's key names from the same layout
    cin, state, idx = 3, {}, 0
    for v in LAYOUT:
        if v == "M":
            idx += 1
            continue
        state[f"features.{idx}.weight"] = torch.randn(int(v), cin, 3, 3) * 0.05
        state[f"features.{idx}.bias"] = torch.zeros(int(v))
        cin, idx = int(v), idx + 2
    state["classifier.0.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "vgg19.pth")
    loss = losses.VGGContentLoss(tmp_path / "vgg19.pth")
    a, b = pair
    assert loss(a, a) == 0 and loss(a, b) > 0
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a torchvision VGG-19"):
        losses.VGGContentLoss(tmp_path / "other.pth")
