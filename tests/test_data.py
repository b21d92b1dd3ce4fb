import logging

import numpy as np
import pytest
from PIL import Image

from photos.io import ImageError, load_image
from photos.samples import TRAIN_PHOTOS, VALIDATION_PHOTOS
from train.data import (DatasetError, builtin_pairs, dped_pairs, folder_pairs, item_rngs, open_pairs,
                        sample_batch)
from photos.degrade import DegradationConfig, degrade, shift
from tests.conftest import write_photo


def test_dped_layout_loader(dped_layout):
    train, val = dped_pairs(dped_layout, "iphone", "train"), dped_pairs(dped_layout, "iphone", "val")
    assert len(train) == 6 and len(val) == 2
    assert dped_pairs(dped_layout / "iphone", "iphone").names == train.names  # root/<phone> works too
    phone, dslr = sample_batch(train, 32, item_rngs((0, 0), range(3)))
    assert phone.shape == dslr.shape == (3, 3, 32, 32)
    with pytest.raises(DatasetError, match="DPED layout"):
        dped_pairs(dped_layout, "sony")


def test_odd_images_are_converted_and_unreadable_ones_skipped(tmp_path, caplog):
    root = tmp_path / "pairs"
    for i in range(4):
        write_photo(root / "dslr" / f"{i}.png", seed=i)
    rgb = (np.random.default_rng(1).random((48, 64, 3)) * 255).astype(np.uint8)
    (root / "phone").mkdir()
    Image.fromarray(rgb[..., 0]).save(root / "phone" / "0.png")                                 # grayscale
    Image.fromarray(np.dstack([rgb, np.full((48, 64), 128, np.uint8)])).save(root / "phone" / "1.png")  # RGBA
    Image.fromarray((rgb[..., 1].astype(np.uint16) * 257)).save(root / "phone" / "2.png")      # 16-bit
    write_photo(tmp_path / "whole.jpg")
    (root / "phone" / "3.jpg").write_bytes((tmp_path / "whole.jpg").read_bytes()[:300])       # truncated
    for f in ["0.png", "1.png", "2.png"]:
        img = load_image(root / "phone" / f)
        assert img.shape == (48, 64, 3) and img.dtype == np.float32 and 0 <= img.min() <= img.max() <= 1
    with pytest.raises(ImageError, match="3.jpg"):
        load_image(root / "phone" / "3.jpg")
    pairs = folder_pairs(root, "train", val_every=1000)  # first pair is validation, three for training
    with caplog.at_level(logging.WARNING, logger="train"):
        phone, _ = sample_batch(pairs, 32, item_rngs((0, 0), range(8)))
    assert phone.shape == (8, 3, 32, 32)
    assert "3.jpg" in caplog.text


def test_folder_without_pairs_is_a_clear_error(tmp_path):
    (tmp_path / "phone").mkdir()
    (tmp_path / "dslr").mkdir()
    with pytest.raises(DatasetError, match="No images with matching names"):
        open_pairs(tmp_path, None, "train")
    with pytest.raises(DatasetError, match="not found"):
        open_pairs(tmp_path / "missing", None, "train")


def test_builtin_pairs_are_deterministic_and_split_by_photo():
    assert not set(TRAIN_PHOTOS) & set(VALIDATION_PHOTOS)
    assert {"stereo_motorcycle_left", "stereo_motorcycle_right"} <= set(TRAIN_PHOTOS)
    a, b = builtin_pairs("val", seed=3), builtin_pairs("val", seed=3)
    assert a.names == [f"{n}#0" for n in VALIDATION_PHOTOS]
    for x, y in zip(a.phone, b.phone):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.phone[0], builtin_pairs("val", seed=4).phone[0])


def test_fidelity_gate_scores_the_phone_side_the_benchmark_feeds():
    from artifacts.fidelity import fidelity_inputs

    gate = fidelity_inputs((256, 256), resizable=True, multiple=16)
    assert [name for name, _ in gate] == [*(f"{n}@256x256" for n in VALIDATION_PHOTOS),
                                          *(f"{n}:phone@256x256" for n in VALIDATION_PHOTOS),
                                          "coffee:phone@400x592", "rocket:phone@416x640"]
    # at their own size: the validation pairs' phone side (what benchmark and evaluate feed), cropped
    for (_, own), phone in zip(gate[-2:], builtin_pairs("val").phone):
        np.testing.assert_array_equal(own, phone[:own.shape[0], :own.shape[1]])


def test_degradation_is_darker_flatter_and_misaligned_within_bounds():
    rng = np.random.default_rng(0)
    photo = rng.random((64, 80, 3)).astype(np.float32) * 0.8 + 0.1
    out = degrade(photo, np.random.default_rng(1))
    assert out.shape == photo.shape and out.dtype == np.float32
    assert out.mean() < photo.mean() and out.std() < photo.std()
    np.testing.assert_array_equal(degrade(photo, np.random.default_rng(1)), out)
    assert shift(photo, 2, -1)[5, 5].tolist() == photo[3, 6].tolist()
    assert DegradationConfig().max_shift <= 3
