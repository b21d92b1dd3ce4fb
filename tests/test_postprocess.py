import numpy as np
import pytest

from enhance.postprocess import equalize_histogram, gamma_correct, postprocess


@pytest.fixture
def dark():
    rng = np.random.default_rng(0)
    return (rng.random((32, 40, 3)) * 0.3).astype(np.float32)


def test_global_equalization_spreads_brightness(dark):
    out = equalize_histogram(dark)
    assert out.shape == dark.shape and out.max() > 0.9 and out.max(axis=2).std() > dark.max(axis=2).std()


def test_per_region_equalization_uses_each_region_histogram(dark):
    img = dark.copy()
    img[:, 20:] += 0.6  # a bright right half
    labels = np.zeros(img.shape[:2], int)
    labels[:, 20:] = 1
    out = equalize_histogram(img, labels)
    left, right = out[:, :20].max(axis=2), out[:, 20:].max(axis=2)
    assert left.max() > 0.9 and right.min() < 0.1  # each region spans the full range on its own
    with pytest.raises(ValueError, match="label map"):
        equalize_histogram(img, labels[:10])


def test_gamma_brightens_midtones(dark):
    assert np.allclose(gamma_correct(np.full((2, 2, 3), 0.25, np.float32)), 0.25 ** (1 / 2.2), atol=1e-6)
    assert postprocess(dark, ["he", "gamma"]).mean() > dark.mean()
    with pytest.raises(ValueError, match="Supported: he, gamma"):
        postprocess(dark, ["sharpen"])
