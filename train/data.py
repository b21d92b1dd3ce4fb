"""Paired (phone, DSLR) training data: the DPED layout, a generic paired folder, and the built-in sample set.

Every source is a ``PairSet``: ``len()``, ``names`` and ``pair(i) -> (phone, dslr)`` as float32 (H, W, 3) RGB in
[0, 1]. Folder sets read files lazily (the real DPED set is ~160K patches); odd images are converted by
``photos.load_image`` and unreadable ones are skipped with a warning naming the file.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from photos.io import ImageError, list_images, load_image
from artifacts.thumbnail import thumbnail
from photos.samples import SPLITS, sample_photo

from photos.degrade import DEGRADATIONS, DegradationConfig, degrade, phone_side

log = logging.getLogger("train")


class DatasetError(ValueError):
    """A dataset folder that does not have the expected layout or holds no usable pairs."""


class PairSet:
    names: list[str]

    def __len__(self) -> int:
        return len(self.names)

    def pair(self, i: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(phone, dslr) of pair ``i``, cropped to their common size; None when a file is unreadable."""
        raise NotImplementedError

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A random readable pair; raises DatasetError when 100 draws in a row find none."""
        for _ in range(100):
            got = self.pair(int(rng.integers(len(self))))
            if got is not None:
                return got
        raise DatasetError("Too many unreadable images: no usable pairs left")


@dataclass
class MemoryPairs(PairSet):
    names: list[str]
    phone: list[np.ndarray]
    dslr: list[np.ndarray]

    def pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.phone[i], self.dslr[i]


@dataclass
class FilePairs(PairSet):
    phone_files: list[Path]
    dslr_files: list[Path]
    names: list[str] = field(init=False)
    bad: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.names = [p.name for p in self.phone_files]

    def pair(self, i: int) -> tuple[np.ndarray, np.ndarray] | None:
        if i in self.bad:
            return None
        try:
            a, b = load_image(self.phone_files[i]), load_image(self.dslr_files[i])
        except ImageError as err:
            log.warning("skipping unreadable pair %s: %s", self.names[i], err)
            self.bad.add(i)
            return None
        h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
        return a[:h, :w], b[:h, :w]


@lru_cache(maxsize=4)
def builtin_pairs(split: str = "train", variants: int = 4, seed: int = 0,
                  degradation: DegradationConfig | None = None) -> MemoryPairs:
    """The scikit-image photos as DSLR targets and their degraded versions as phone inputs.

    ``variants`` degraded versions per training photo (independent draws); validation pairs are one aligned
    version per photo (misalignment off) so that PSNR measures enhancement, not registration.
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}. Known: {', '.join(SPLITS)}")
    cfg = degradation or DegradationConfig()
    if split == "val":
        cfg, variants = DegradationConfig(**{**cfg.__dict__, "max_shift": 0}), 1
    photos = {name: sample_photo(name) for name in SPLITS[split]}
    names, phone, dslr = [], [], []
    for name, img in phone_side(photos, 1 if split == "val" else 0, seed, variants, cfg):
        img.setflags(write=False)  # cached and shared: read-only
        names.append(name)
        phone.append(img)
        dslr.append(np.asarray(photos[name.rsplit("#", 1)[0]]))
    return MemoryPairs(names, phone, dslr)


@dataclass
class FreshDegradations(PairSet):
    """Built-in photos degraded afresh for every draw: a random crop (``crop`` pixels per side, the 'photo' a
    global branch sees whole) of a random photo, through a degradation drawn from one of ``configs``. Training only:
    every patch has its own exposure, white balance, tone, noise and blur, so image-adaptive models see the range."""
    names: list[str]
    photos: list[np.ndarray]
    configs: tuple[DegradationConfig, ...]   # each draw picks one of them
    crop: tuple[int, int] = (128, 320)

    def pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.draw(np.random.default_rng([i]))

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        photo = self.photos[int(rng.integers(len(self.photos)))]
        h, w = photo.shape[:2]
        ch = min(h, int(rng.integers(self.crop[0], self.crop[1] + 1)))
        cw = min(w, int(rng.integers(self.crop[0], self.crop[1] + 1)))
        y, x = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
        dslr = np.ascontiguousarray(photo[y:y + ch, x:x + cw])
        return degrade(dslr, rng, self.configs[int(rng.integers(len(self.configs)))]), dslr


def fresh_degradations(degradation: str = "wide", split: str = "train+") -> FreshDegradations:
    """The built-in training photos (``split``) under the named degradation (photos.degrade.DEGRADATIONS)."""
    if degradation not in DEGRADATIONS:
        raise ValueError(f"Unknown degradation {degradation!r}. Known: {', '.join(DEGRADATIONS)}")
    return FreshDegradations(list(SPLITS[split]), [sample_photo(n) for n in SPLITS[split]], DEGRADATIONS[degradation])


def _matched(phone_dir: Path, dslr_dir: Path) -> FilePairs:
    for d in (phone_dir, dslr_dir):
        if not d.is_dir():
            raise DatasetError(f"Missing folder {d}")
    dslr_by_stem = {p.stem: p for p in list_images(dslr_dir)}
    phone_files = [p for p in list_images(phone_dir) if p.stem in dslr_by_stem]
    if not phone_files:
        raise DatasetError(f"No images with matching names in {phone_dir} and {dslr_dir}")
    unmatched = len(list_images(phone_dir)) - len(phone_files)
    if unmatched:
        log.warning("%d image(s) in %s have no partner in %s and are ignored", unmatched, phone_dir, dslr_dir)
    return FilePairs(phone_files, [dslr_by_stem[p.stem] for p in phone_files])


def dped_pairs(root: str | Path, phone: str, split: str = "train") -> FilePairs:
    """DPED layout: ``<root>/<phone>/training_data/{<phone>,canon}/<N>.jpg`` (train) and
    ``<root>/<phone>/test_data/patches/{<phone>,canon}/<N>.jpg`` (val). ``root`` may also be ``<root>/<phone>``."""
    root = Path(root)
    base = root if (root / "training_data").is_dir() or (root / "test_data").is_dir() else root / phone
    sub = base / ("training_data" if split == "train" else "test_data/patches")
    if not sub.is_dir():
        raise DatasetError(f"{root} is not in the DPED layout for phone {phone!r}: missing {sub}")
    pairs = _matched(sub / phone, sub / "canon")
    # numeric names sort numerically (DPED's 0.jpg ... 159999.jpg)
    order = sorted(range(len(pairs.phone_files)),
                   key=lambda i: (len(pairs.phone_files[i].stem), pairs.phone_files[i].stem))
    return FilePairs([pairs.phone_files[i] for i in order], [pairs.dslr_files[i] for i in order])


def folder_pairs(root: str | Path, split: str = "train", val_every: int = 10,
                 low: str = "phone", high: str = "dslr") -> FilePairs:
    """Generic paired folder ``<root>/<low>`` and ``<root>/<high>`` (default phone/ and dslr/) with matching file
    names (any suffix).

    Split by photo: every ``val_every``-th pair (sorted by name, starting with the first) is validation.
    """
    root = Path(root)
    pairs = _matched(root / low, root / high)
    n = len(pairs.phone_files)
    val = set(range(0, n, val_every)) if n > 1 else set()
    keep = [i for i in range(n) if (i in val) == (split == "val")]
    if not keep:
        raise DatasetError(f"{root} has too few pairs ({n}) for a {split} split")
    return FilePairs([pairs.phone_files[i] for i in keep], [pairs.dslr_files[i] for i in keep])


def open_pairs(data: str | Path | None, phone: str | None, split: str, seed: int = 0) -> PairSet:
    """The pairs a training run uses: built-in (``data`` None), DPED layout (``phone`` given) or paired folder."""
    if data is None:
        return builtin_pairs(split, seed=seed)
    if not Path(data).is_dir():
        raise DatasetError(f"Dataset folder not found: {data}")
    if phone:
        return dped_pairs(data, phone, split)
    return folder_pairs(data, split)


def _crop(img: np.ndarray, y: int, x: int, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    if h < size or w < size:  # small photos are edge-padded up to one patch
        img = np.pad(img, ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0)), mode="edge")
    return img[y:y + size, x:x + size]


def item_rngs(key: Sequence[int], items: Iterable[int]) -> list[np.random.Generator]:
    """One generator per item of a global batch: item ``i`` of the batch keyed ``key`` (e.g. (seed, step)) is
    drawn from ``default_rng([*key, i])``, so any shard of the batch is drawn alone, the same in every process."""
    return [np.random.default_rng([*key, i]) for i in items]


def draw_patch(pairs: PairSet, patch: int, rng: np.random.Generator, augment: bool = True,
               thumb: int = 0) -> tuple[np.ndarray, ...]:
    """One random aligned ``patch`` x ``patch`` crop (phone, dslr) of a random readable pair, rotated and flipped
    when ``augment``; with ``thumb`` > 0 also the thumbnail of the whole phone image, turned the same way (what a
    global branch sees of the photo the patch is part of). Raises DatasetError when no pair is readable."""
    a, b = pairs.draw(rng)
    t = [thumbnail(a, thumb)] if thumb else []
    h, w = a.shape[:2]
    y, x = int(rng.integers(max(1, h - patch + 1))), int(rng.integers(max(1, w - patch + 1)))
    out = [_crop(a, y, x, patch), _crop(b, y, x, patch), *t]
    if augment:
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        out = [np.rot90(v, k) for v in out]
        if flip:
            out = [v[:, ::-1] for v in out]
    return tuple(np.ascontiguousarray(v) for v in out)


def _chw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(2, 0, 1).contiguous()


def sample_batch(pairs: PairSet, patch: int, rngs: list[np.random.Generator], augment: bool = True,
                 thumb: int = 0) -> tuple[torch.Tensor, ...]:
    """One patch per generator (see ``item_rngs``) -> (phone, dslr), each (N, 3, patch, patch), and with
    ``thumb`` the thumbnails (N, 3, thumb, thumb)."""
    drawn = [draw_patch(pairs, patch, rng, augment, thumb) for rng in rngs]
    return tuple(torch.stack([_chw(d[j]) for d in drawn]) for j in range(len(drawn[0])))


class PatchDataset(torch.utils.data.Dataset):
    """Training patches keyed by (step, i): item i of step's global batch, drawn from ``default_rng([seed, step,
    i])``. Decoding, cropping and flips run in the DataLoader's workers; the batch order stays (seed, step)."""

    def __init__(self, pairs: PairSet, patch: int, seed: int, augment: bool = True, thumb: int = 0):
        self.pairs, self.patch, self.seed, self.augment, self.thumb = pairs, patch, seed, augment, thumb

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        step, i = key
        drawn = draw_patch(self.pairs, self.patch, np.random.default_rng([self.seed, step, i]), self.augment,
                           self.thumb)
        return tuple(_chw(v) for v in drawn)


class StepBatches(torch.utils.data.Sampler):
    """The keys of steps ``start`` .. ``stop - 1``, each step's ``items`` (this process's shard) as one batch."""

    def __init__(self, start: int, stop: int, items: range):
        self.start, self.stop, self.items = start, stop, items

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.stop):
            yield [(step, i) for i in self.items]

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def patch_loader(pairs: PairSet, patch: int, seed: int, start: int, stop: int, items: range, workers: int,
                 pin_memory: bool = False, thumb: int = 0) -> torch.utils.data.DataLoader:
    """Batches of steps ``start`` .. ``stop - 1`` (this process's ``items`` of each), decoded on ``workers``
    processes (0: in this one); (phone, dslr) or with ``thumb`` (phone, dslr, thumbnail)."""
    # forkserver, not fork: forking a process whose other threads hold locks (oneDNN, JAX when litert is loaded)
    # can deadlock the worker; the one-time cost is the workers' import of this module
    return torch.utils.data.DataLoader(PatchDataset(pairs, patch, seed, thumb=thumb),
                                       batch_sampler=StepBatches(start, stop, items), num_workers=workers,
                                       pin_memory=pin_memory, prefetch_factor=4 if workers else None,
                                       multiprocessing_context="forkserver" if workers else None)


def worker_error(err: Exception) -> str:
    """The one-line message of an error raised in a DataLoader worker (which wraps it in a traceback)."""
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    last = lines[-1] if lines else type(err).__name__
    return last.split(": ", 1)[1] if "Error: " in last else last


def center_crop(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    y, x = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return img[y:y + size, x:x + size]
