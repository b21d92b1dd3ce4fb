"""The built-in sample photos: colour photographs bundled with scikit-image and matplotlib (nothing is downloaded).

They are split by photo, never by patch; the two halves of the stereo pair stay in the same split.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

TRAIN_PHOTOS = ("astronaut", "chelsea", "hubble_deep_field", "immunohistochemistry",
                "stereo_motorcycle_left", "stereo_motorcycle_right")
VALIDATION_PHOTOS = ("coffee", "rocket")
EXTRA_TRAIN_PHOTOS = ("grace_hopper",)   # matplotlib's sample photo: a training source of the wide degradations
SPLITS = {"train": TRAIN_PHOTOS, "val": VALIDATION_PHOTOS, "train+": TRAIN_PHOTOS + EXTRA_TRAIN_PHOTOS}
KNOWN = TRAIN_PHOTOS + EXTRA_TRAIN_PHOTOS + VALIDATION_PHOTOS


@lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    from skimage import data

    if name == "grace_hopper":
        from matplotlib import cbook

        with cbook.get_sample_data("grace_hopper.jpg") as f:
            from PIL import Image

            img = np.asarray(Image.open(f).convert("RGB"))
    elif name.startswith("stereo_motorcycle_"):
        left, right, _disparity = data.stereo_motorcycle()
        img = left if name.endswith("left") else right
    else:
        img = getattr(data, name)()
    img = np.asarray(img, dtype=np.float32) / 255.0
    img.setflags(write=False)
    return img


def sample_photo(name: str) -> np.ndarray:
    """One built-in photo as float32 (H, W, 3) RGB in [0, 1] (read-only)."""
    if name not in KNOWN:
        raise ValueError(f"Unknown sample photo {name!r}. Known: {', '.join(KNOWN)}")
    return _photo(name)


def sample_photos(split: str = "val") -> dict[str, np.ndarray]:
    """The built-in photos of one split ('train', 'val', or 'train+': train and the extra photos), by name."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}. Known: {', '.join(SPLITS)}")
    return {name: sample_photo(name) for name in SPLITS[split]}
