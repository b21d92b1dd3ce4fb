"""The classical corrections every evaluation reports beside the networks."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from photos.baselines import BASELINES, clahe, gray_world, levels
from photos.samples import sample_photos


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return next(iter(sample_photos("val").values()))[::4, ::4].astype(np.float32)


@settings(max_examples=20, deadline=None)
@given(gain=st.tuples(*[st.floats(0.2, 1.0)] * 3), offset=st.tuples(*[st.floats(0.0, 0.2)] * 3))
def test_levels_undoes_any_per_channel_gain_and_offset(gain, offset):
    rng = np.random.default_rng(0)
    x = rng.random((32, 32, 3)).astype(np.float32)
    cast = x * np.array(gain, np.float32) + np.array(offset, np.float32)  # exposure, cast and lifted blacks
    assert np.allclose(levels(cast), levels(x), atol=1e-4)


def test_gray_world_balances_a_cast_and_keeps_the_range(photo):
    cast = photo * np.array([1.0, 0.8, 0.5], np.float32)
    out = gray_world(cast)
    means = out.reshape(-1, 3).mean(axis=0)
    assert means.max() - means.min() < 0.02 and out.min() >= 0 and out.max() <= 1


def test_every_baseline_keeps_shape_type_and_range(photo):
    for name, correct in BASELINES.items():
        out = correct(photo * 0.4)
        assert out.shape == photo.shape and out.dtype == np.float32 and 0 <= out.min() <= out.max() <= 1, name
    assert clahe(photo * 0.4).std() > (photo * 0.4).std()  # local contrast raised


def test_evaluate_reports_the_baselines_beside_the_model():
    from train.evaluate import evaluate_model

    result = evaluate_model("dped_mobile")
    for key in ("validation", "unseen_degradation", "night_degradation"):
        mean, baselines = result[key]["mean"], result[key]["baselines"]
        assert set(baselines) == set(BASELINES)
        best = max(baselines, key=lambda k: baselines[k]["psnr"])
        assert mean["best_baseline"] == best
        assert mean["vs_best_baseline_db"] == pytest.approx(mean["output_psnr"] - baselines[best]["psnr"], abs=0.011)
