"""A camera degradation model that turns a good photo (the 'DSLR' side) into a phone-like one.

Applied in this order, each step with parameters drawn from the ranges of ``DegradationConfig``:

1. misalignment: the phone view is shifted by up to ``max_shift`` whole pixels (edge-replicated); real
   phone/DSLR pairs never align exactly, which is why DPED compares colours only after a blur;
2. optics and sensor size: Gaussian blur, then down- and up-sampling by ``resample`` (lost detail);
3. low light: exposure scaled in linear light (sRGB decoded with gamma 2.2), as a gain or in EV;
4. sensor noise: signal-dependent Poisson-Gaussian noise in linear light, variance = a * signal + b;
5. colour cast: per-channel white-balance gains; optionally a colour temperature error (red and blue gains
   2^t and 2^-t) and a green-magenta tint;
6. tone: optionally a tone curve (a power of the encoded value) and lifted blacks (flare, a black-level error);
   contrast pulled toward the mean, saturation pulled toward gray;
7. JPEG compression at ``jpeg_quality``.

Optional steps (``None``) draw nothing, so the default config ("camera", the one the shipped DPED+ of the
paper's networks trained on) gives the same pairs as before they existed. ``WIDE`` spans what phones produce
(README, "Wider degradations").

Deterministic for a seed: ``degrade(img, np.random.default_rng(seed))`` always returns the same pair.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image
from skimage.filters import gaussian
from skimage.transform import resize

from .samples import sample_photos

Range = tuple[float, float]


@dataclass(frozen=True)
class DegradationConfig:
    max_shift: int = 2                           # pixels of misalignment (0 for aligned evaluation pairs)
    blur_sigma: Range = (0.5, 1.1)               # optics blur, pixels
    resample: Range = (1.3, 1.8)                 # down-up sampling factor
    exposure: Range = (0.45, 0.75)               # linear-light gain (< 1: darker)
    noise_shot: Range = (0.002, 0.008)           # a: shot-noise variance per unit of linear signal
    noise_read: Range = (1e-5, 1e-4)             # b: read-noise variance
    cast: float = 0.08                           # channel gains drawn from 1 +- cast
    contrast: Range = (0.7, 0.9)                 # 1 keeps contrast
    saturation: Range = (0.6, 0.85)              # 1 keeps saturation
    jpeg_quality: tuple[int, int] = (60, 85)
    exposure_ev: Range | None = None             # replaces ``exposure``: gain 2^ev, ev drawn uniformly
    temperature: Range | None = None             # t: red gain 2^t, blue gain 2^-t (auto white balance error)
    tint: float | None = None                    # green gain 1 +- tint (magenta / green)
    gamma: Range | None = None                   # encoded value ** gamma (an ISP's tone curve, > 1: darker mid-tones)
    black_level: Range | None = None             # added to the encoded value (flare, lifted blacks)


# Phones, not one camera (README, "Wider degradations"): -2.5 EV (night scenes auto exposure gives up on) to +1 EV
# (backlit scenes it overexposes); tungsten to shade light uncorrected (red/blue up to 2x either way: 2700 K seen
# through a 5500 K white balance is about that); tints of 10 %; tone curves from flat to punchy (gamma 0.75-1.35,
# contrast 0.6-1.15); washed-out to oversaturated colour; blacks lifted by up to 8 % (flare); shot noise from
# bright daylight to ISO 3200-like, slight to strong optics blur and resampling, JPEG 50-95.
WIDE = DegradationConfig(max_shift=2, blur_sigma=(0.3, 1.5), resample=(1.0, 2.0), noise_shot=(0.001, 0.02),
                         noise_read=(1e-5, 4e-4), cast=0.05, contrast=(0.6, 1.15), saturation=(0.5, 1.25),
                         jpeg_quality=(50, 95), exposure_ev=(-2.5, 1.0), temperature=(-1.0, 1.0), tint=0.1,
                         gamma=(0.75, 1.35), black_level=(0.0, 0.08))
# For training: a degradation name -> the configs a fresh draw picks from (uniformly).
DEGRADATIONS = {"camera": (DegradationConfig(),), "wide": (WIDE,), "camera+wide": (DegradationConfig(), WIDE)}


def _u(rng: np.random.Generator, r: Range) -> float:
    return float(rng.uniform(r[0], r[1]))


def shift(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Translate by whole pixels, replicating the edge."""
    h, w = img.shape[:2]
    p = max(abs(dy), abs(dx))
    if p == 0:
        return img
    padded = np.pad(img, ((p, p), (p, p), (0, 0)), mode="edge")
    return padded[p - dy:p - dy + h, p - dx:p - dx + w]


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0


def degrade(dslr: np.ndarray, rng: np.random.Generator, cfg: DegradationConfig = DegradationConfig()) -> np.ndarray:
    """float32 (H, W, 3) RGB in [0, 1] -> a phone-like version of the same size."""
    h, w = dslr.shape[:2]
    x = dslr.astype(np.float32)
    if cfg.max_shift > 0:
        x = shift(x, int(rng.integers(-cfg.max_shift, cfg.max_shift + 1)),
                  int(rng.integers(-cfg.max_shift, cfg.max_shift + 1)))
    x = gaussian(x, sigma=_u(rng, cfg.blur_sigma), channel_axis=-1, preserve_range=True)
    f = _u(rng, cfg.resample)
    small = resize(x, (max(1, round(h / f)), max(1, round(w / f))), order=1, anti_aliasing=False)
    x = resize(small, (h, w), order=1, anti_aliasing=False)

    gain = 2.0 ** _u(rng, cfg.exposure_ev) if cfg.exposure_ev else _u(rng, cfg.exposure)
    linear = np.clip(x, 0, 1) ** 2.2 * gain
    var = _u(rng, cfg.noise_shot) * linear + _u(rng, cfg.noise_read)
    linear = np.clip(linear + rng.standard_normal(linear.shape) * np.sqrt(var), 0, 1)
    gains = 1 + rng.uniform(-cfg.cast, cfg.cast, size=3)
    if cfg.temperature:
        t = _u(rng, cfg.temperature)
        gains = gains * np.array([2.0 ** t, 1.0, 2.0 ** -t])
    if cfg.tint:
        gains[1] *= 1 + rng.uniform(-cfg.tint, cfg.tint)
    linear = np.clip(linear * gains, 0, 1)
    x = linear ** (1 / 2.2)
    if cfg.gamma:
        x = x ** _u(rng, cfg.gamma)
    if cfg.black_level:
        b = _u(rng, cfg.black_level)
        x = b + (1 - b) * x

    x = x.mean() + (x - x.mean()) * _u(rng, cfg.contrast)
    gray = x.mean(axis=2, keepdims=True)
    x = gray + (x - gray) * _u(rng, cfg.saturation)
    q = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    return jpeg(np.clip(x, 0, 1), q).astype(np.float32)


def phone_side(photos: dict[str, np.ndarray], split_key: int, seed: int = 0, variants: int = 1,
               cfg: DegradationConfig = DegradationConfig()) -> list[tuple[str, np.ndarray]]:
    """Each photo as a phone takes it, ``variants`` independent draws of ``cfg`` apiece, named ``photo#v``; draw
    ``v`` of the ``p``-th photo is keyed ``(seed, split_key, p, v)`` (the built-in pairs: 0 train, 1 val)."""
    out = []
    for p, (name, photo) in enumerate(photos.items()):
        for v in range(variants):
            out.append((f"{name}#{v}", degrade(photo, np.random.default_rng([seed, split_key, p, v]), cfg)))
    return out


@lru_cache(maxsize=2)
def held_out_phone_photos(seed: int = 0) -> tuple[tuple[str, np.ndarray], ...]:
    """The held-out built-in photos as a phone takes them: the phone side of the validation pairs (one aligned
    draw of the default degradation each; what the benchmark and ``train evaluate`` feed the enhancers). Made once
    per process (every fidelity gate scores them), read-only."""
    photos = phone_side(sample_photos("val"), 1, seed, cfg=DegradationConfig(max_shift=0))
    for _, img in photos:
        img.setflags(write=False)
    return tuple(photos)
