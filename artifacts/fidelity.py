"""The fidelity gate every artifact passes before it is kept: its outputs against a reference on held-out photos.

Export compares an artifact with PyTorch fp32 on the same weights; python -m quantize compares a compressed
artifact with the float artifact it was made from. Both use ``measure`` and the gates in ``artifacts.targets``.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from photos.samples import sample_photos

from .sidecar import Fidelity, FidelitySample

Runner = Callable[[np.ndarray], np.ndarray]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of two arrays of values in [0, 1]; inf when equal."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def fidelity_inputs(size: tuple[int, int], resizable: bool, multiple: int = 1) -> list[tuple[str, np.ndarray]]:
    """The held-out built-in photos as float32 (H, W, 3) inputs, each both clean and as a phone takes it (the
    validation pairs' phone side, ``name:phone``: what the enhancers are fed), resized to the export ``size``; for a
    resizable artifact the phone-side photos also at their own size, cropped to a multiple of ``multiple`` (what
    the benchmark's fidelity scores)."""
    from skimage.transform import resize

    from photos.degrade import held_out_phone_photos

    phone = [(f"{n.split('#')[0]}:phone", p) for n, p in held_out_phone_photos()]
    inputs = [(f"{name}@{size[0]}x{size[1]}", resize(p, size, order=1, anti_aliasing=True).astype(np.float32))
              for name, p in [*sample_photos("val").items(), *phone]]
    for name, p in phone if resizable else ():
        p = p[:p.shape[0] - p.shape[0] % multiple, :p.shape[1] - p.shape[1] % multiple]
        inputs.append((f"{name}@{p.shape[0]}x{p.shape[1]}", np.ascontiguousarray(p, dtype=np.float32)))
    return inputs


def sample(name: str, out: np.ndarray, ref: np.ndarray) -> FidelitySample:
    value = psnr(out, ref)
    return FidelitySample(photo=name, hw=list(ref.shape[:2]),
                          psnr_db=round(value, 2) if math.isfinite(value) else 999.0,
                          max_abs_diff=float(np.abs(out.astype(np.float64) - ref).max()))


def measure(run: Runner, reference: Runner, inputs: list[tuple[str, np.ndarray]], gate_db: float,
            reference_name: str, mode: str = "measured", problems: list[str] | None = None,
            note: str = "") -> Fidelity:
    """Run both on every input; the gate passes when the worst PSNR reaches ``gate_db`` and there are no
    ``problems`` (what a saved program that cannot run here gets wrong)."""
    samples = [sample(name, run(image), reference(image)) for name, image in inputs]
    worst = min(s.psnr_db for s in samples)
    return Fidelity(gate_db=gate_db, psnr_db_min=round(worst, 2), passed=worst >= gate_db and not problems,
                    mode=mode, reference=reference_name, samples=samples, program_problems=list(problems or []),
                    note=note)
