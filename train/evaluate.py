"""Quality of a trained generator: PSNR/SSIM of input and output against the DSLR side, per photo, beside the
classical corrections a user would try first (``photos.baselines``: levels, gray world, CLAHE) on the same photos.

Sets: the validation pairs of the data (built-in: held-out photos through the training degradation), and for the
built-in data two degradations made without ``photos.degrade``: 'unseen' (the held-out photos darkened by Pillow's
brightness enhancer, flattened by its contrast enhancer, given Gaussian noise by scikit-image) and 'night'
(strong underexposure, a warm cast and lifted blacks, the case the paper targets).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance
from skimage.util import random_noise

from photos.baselines import BASELINES
from photos.samples import sample_photos
from models import CheckpointError, create_model

from .data import open_pairs
from .distributed import resolve_device
from .metrics import psnr_ssim


def unseen_degradation(photo: np.ndarray, seed: int = 0) -> np.ndarray:
    """Mildly darker (x0.8), flatter (contrast x0.8) and noisier (sigma 0.02) - not our camera model."""
    img = Image.fromarray(np.round(photo * 255).astype(np.uint8))
    img = ImageEnhance.Contrast(ImageEnhance.Brightness(img).enhance(0.8)).enhance(0.8)
    x = np.asarray(img, dtype=np.float32) / 255.0
    return random_noise(x, mode="gaussian", var=0.02 ** 2, rng=seed).astype(np.float32)


def night_degradation(photo: np.ndarray, seed: int = 0) -> np.ndarray:
    """A night-like phone photo: about -2.3 EV in linear light, a warm cast (tungsten-like gains), lifted blacks
    (a flare/black-level offset), shot noise-like Gaussian noise; not our camera model either."""
    linear = np.clip(photo, 0, 1) ** 2.2
    dark = linear * 0.2 * np.array([1.15, 0.95, 0.7], dtype=np.float32)
    x = np.clip(dark, 0, 1) ** (1 / 2.2) * 0.9 + 0.06
    return random_noise(np.clip(x, 0, 1), mode="gaussian", var=0.015 ** 2, rng=seed).astype(np.float32)


def _to_t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(x, dtype=np.float32)).permute(2, 0, 1)[None]


@torch.no_grad()
def score_pairs(model: torch.nn.Module, pairs: list[tuple[str, np.ndarray, np.ndarray]]) -> dict:
    rows = []
    device = next(model.parameters()).device
    for name, phone, dslr in pairs:
        a, b = _to_t(phone), _to_t(dslr)
        (p_out, s_out), (p_in, s_in) = psnr_ssim(model(a.to(device)).cpu(), b), psnr_ssim(a, b)
        rows.append({"photo": name, "input_psnr": round(p_in, 2), "output_psnr": round(p_out, 2),
                     "input_ssim": round(s_in, 4), "output_ssim": round(s_out, 4)})
    mean = {k: round(float(np.mean([r[k] for r in rows])), 4 if "ssim" in k else 2)
            for k in ("input_psnr", "output_psnr", "input_ssim", "output_ssim")}
    mean["psnr_gain_db"] = round(mean["output_psnr"] - mean["input_psnr"], 2)
    baselines = {}
    for name, correct in BASELINES.items():
        scores = np.array([psnr_ssim(_to_t(correct(np.asarray(phone, dtype=np.float32))), _to_t(dslr))
                           for _, phone, dslr in pairs])
        baselines[name] = {"psnr": round(float(scores[:, 0].mean()), 2), "ssim": round(float(scores[:, 1].mean()), 4)}
    best = max(baselines, key=lambda k: baselines[k]["psnr"])
    mean["best_baseline"] = best
    mean["vs_best_baseline_db"] = round(mean["output_psnr"] - baselines[best]["psnr"], 2)
    return {"mean": mean, "baselines": baselines, "photos": rows}


def evaluate_model(name: str, checkpoint: str | None = None, data: str | None = None,
                   phone: str | None = None, limit: int = 50, device: str = "auto") -> dict:
    """Scores of ``name`` (shipped weights, or ``checkpoint``) on the validation data, full photos.

    Intrinsic decomposers: held-out synthetic images (albedo, shading, reconstruction through the matching
    shipped composer, shading correlation, the trivial split). mdie: the three domains' held-out pairs under
    each label (train.mdie.evaluate_mdie), plus the photo pairs below.
    """
    dev = resolve_device(device)
    if name.startswith("intrinsic_decomposer"):
        return _evaluate_intrinsic(name, checkpoint, dev)
    model = create_model(name, pretrained=checkpoint is None, checkpoint=checkpoint).to(dev)
    val = open_pairs(data, phone, "val")
    pairs = []
    for i in range(min(len(val), limit)):
        got = val.pair(i)
        if got is not None:
            pairs.append((val.names[i], *got))
    result = {"model": name, "weights": checkpoint or "shipped", "validation": score_pairs(model, pairs)}
    if name == "mdie":
        from .domains import domain_pairs
        from .mdie import evaluate_mdie
        from models import DOMAINS

        held_out = {d: domain_pairs(d, None, "val") for d in DOMAINS}
        sets = {d: [pairs.pair(i) for i in range(len(pairs))] for d, pairs in held_out.items()}
        result["domains"] = evaluate_mdie(model, sets)
    if data is None:
        for key, degrade in (("unseen_degradation", unseen_degradation), ("night_degradation", night_degradation)):
            made = [(n, degrade(p, seed=i), np.asarray(p)) for i, (n, p) in enumerate(sample_photos("val").items())]
            result[key] = score_pairs(model, made)
    return result


def _evaluate_intrinsic(name: str, checkpoint: str | None, device: torch.device) -> dict:
    from .intrinsic import COMPOSER_OF, evaluate_intrinsic
    from .intrinsic_data import validation_triples

    decomposer = create_model(name, pretrained=checkpoint is None, checkpoint=checkpoint)
    sibling = Path(checkpoint).with_name("composer.pt") if checkpoint else None  # the same training run's F'
    try:
        if sibling is not None and sibling.is_file():
            composer, used = create_model(COMPOSER_OF[name], checkpoint=sibling), str(sibling)
        else:
            composer, used = create_model(COMPOSER_OF[name], pretrained=True), f"{COMPOSER_OF[name]} (shipped)"
    except CheckpointError:  # not every composer ships: reconstruct with the image formation model A * S
        composer, used = None, "none shipped: reconstruction = albedo x shading"
    decomposer.to(device)
    if composer is not None:
        composer.to(device)
    real = []
    with torch.no_grad():
        for photo in sample_photos("val").values():
            x = _to_t(photo[:photo.shape[0] // 32 * 32, :photo.shape[1] // 32 * 32]).to(device)
            albedo, shading = decomposer(x)
            rec = composer(torch.cat([albedo, shading], 1)) if composer is not None else albedo * shading
            real.append([psnr_ssim(rec, x)[0], float(shading.mean()), float(shading.mean(1).std())])
    m = np.mean(real, axis=0)
    return {"model": name, "weights": checkpoint or "shipped", "composer": used,
            "held_out_synthetic": evaluate_intrinsic(decomposer, composer, validation_triples(16)),
            "held_out_photos": {"reconstruction_psnr": round(float(m[0]), 3), "shading_mean": round(float(m[1]), 4),
                                "shading_spatial_std": round(float(m[2]), 4),
                                "trivial_split": "shading_mean 1, shading_spatial_std 0"}}



def evaluate_artifact(path: str | Path, checkpoint: str | None = None, data: str | None = None,
                      phone: str | None = None, limit: int = 50) -> dict:
    """An exported photo enhancer (any target its runtime runs here) against the PyTorch fp32 model it was made from,
    on the sets of ``evaluate_model``: each set's PSNR/SSIM of both against the DSLR side, the artifact's PSNR drop,
    and its fidelity (worst PSNR of its output against the fp32 output). The reference is the shipped weights of the
    sidecar's model, or ``checkpoint``; either must be the file the artifact was made from (its SHA-256)."""
    from artifacts import SidecarError, load
    from artifacts.fidelity import psnr
    from artifacts.sidecar import sidecar_for
    from models.registry import weights_file, weights_sha256

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"--artifact {path}: no such file")
    try:
        sidecar = sidecar_for(path)
    except SidecarError as err:
        raise ValueError(str(err)) from None
    if [t.name for t in sidecar.outputs] != ["enhanced"]:
        raise ValueError(f"{path.name} outputs {', '.join(t.name for t in sidecar.outputs)}: --artifact scores photo "
                         "enhancers")
    weights = weights_file(sidecar.model, checkpoint)
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: no such checkpoint")
    if sidecar.weights_sha256 and weights_sha256(sidecar.model, checkpoint) != sidecar.weights_sha256:
        raise ValueError(f"{path.name} was made from other weights than {weights}; pass the checkpoint it was made "
                         "from with --checkpoint")
    model = create_model(sidecar.model, pretrained=checkpoint is None, checkpoint=checkpoint)
    run = load(path)
    m = sidecar.size_multiple

    def crop(x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(x, dtype=np.float32)[:x.shape[0] // m * m, :x.shape[1] // m * m])

    val = open_pairs(data, phone, "val")
    sets = {"validation": [got for i in range(min(len(val), limit)) if (got := val.pair(i)) is not None]}
    if data is None:
        for key, degrade in (("unseen_degradation", unseen_degradation), ("night_degradation", night_degradation)):
            sets[key] = [(degrade(p, seed=i), p) for i, p in enumerate(sample_photos("val").values())]
    result: dict = {"artifact": str(path), "model": sidecar.model, "target": sidecar.target,
                    "precision": sidecar.precision, "reference": f"PyTorch fp32, {weights.name}"}
    with torch.no_grad():
        for key, pairs in sets.items():
            rows = []
            for phone_img, dslr in pairs:
                x, y = crop(phone_img), crop(dslr)
                ref = model(_to_t(x))
                out = run(x)
                rows.append([*psnr_ssim(ref, _to_t(y)), *psnr_ssim(_to_t(out), _to_t(y)),
                             psnr(out, ref[0].permute(1, 2, 0).numpy())])
            s = np.array(rows, dtype=np.float64)
            result[key] = {"fp32_psnr": round(float(s[:, 0].mean()), 3), "fp32_ssim": round(float(s[:, 1].mean()), 4),
                           "artifact_psnr": round(float(s[:, 2].mean()), 3),
                           "artifact_ssim": round(float(s[:, 3].mean()), 4),
                           "psnr_drop_db": round(float(s[:, 0].mean() - s[:, 2].mean()), 3),
                           "fidelity_db": round(float(min(s[:, 4].min(), 999.0)), 2), "photos": len(rows)}
    return result
