"""Intrinsic decomposition training (paper 3.2.1): supervised pre-training, then self-supervised on real photos.

    python -m train intrinsic                                  # mobile F and F' on built-in synthetic data
    python -m train intrinsic --model intrinsic_decomposer --data ~/sintel/training

Phase 1 (``--pretrain-steps``): labelled triples (built-in synthetic, or a Sintel-style folder), losses
L1(A, A*) + L1(S, S*) + ||I - F'(F(I))||^2 + ||I - F'(A*, S*)||^2 (F' also learns the true composition).
Phase 2: each step adds a batch of unlabeled photos with the reconstruction loss ||I - F'(F(I))||^2 and a shading
smoothness prior, while a labelled batch keeps its supervised terms.

Why the trivial split (A = I, S = 1) does not win: it reconstructs perfectly, so reconstruction alone cannot
reject it. What does: (1) pre-training puts F at the true split before any unlabeled photo is seen; (2) every
self-supervised step keeps a labelled batch (``--w-anchor``), so leaving the true split costs loss; (3) F's
albedo is I / S clipped to [0, 1] (models/intrinsic.py), so on real photos the shading cannot drop below the
image without breaking the reconstruction. The validation reports shading correlation with the truth and the
PSNR of the trivial split next to the network's.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

import models
from models import create_model, keep_freed_memory

from . import losses
from .data import item_rngs
from .distributed import Context, amp_field, device_field, started
from .intrinsic_data import (IntrinsicFolder, intrinsic_folder, labelled_batch, photo_batch, unlabeled_photos,
                             validation_triples)
from .loop import Run, check_options, run_folder, weights_checkpoint
from .metrics import psnr_ssim

COMPOSER_OF = {"intrinsic_decomposer": "intrinsic_composer",
               "intrinsic_decomposer_mobile": "intrinsic_composer_mobile"}


@dataclass
class IntrinsicTrainConfig:
    model: str = field(default="intrinsic_decomposer_mobile",
                       metadata={"help": "decomposer F: intrinsic_decomposer or intrinsic_decomposer_mobile "
                                         "(its composer F' is trained with it)"})
    data: str | None = field(default=None, metadata={"help": "Sintel-style folder with clean|image/, albedo/, "
                                                              "shading/ (default: built-in synthetic triples)"})
    photos: str | None = field(default=None, metadata={"help": "unlabeled photos for the self-supervised phase "
                                                                "(default: built-in training photos)"})
    steps: int = field(default=1200, metadata={"help": "training iterations in all"})
    pretrain_steps: int = field(default=800, metadata={"help": "supervised iterations before self-supervision"})
    batch: int = field(default=8, metadata={"help": "labelled patches per step (and unlabeled in phase 2)"})
    patch: int = field(default=128, metadata={"help": "patch size (a multiple of 32)"})
    lr: float = field(default=2e-3, metadata={"help": "Adam learning rate"})
    lr_decay_every: int = field(default=400, metadata={"help": "halve the learning rate every N steps"})
    w_albedo: float = field(default=1.0, metadata={"help": "albedo L1 weight"})
    w_shading: float = field(default=1.0, metadata={"help": "shading L1 weight"})
    w_rec: float = field(default=10.0, metadata={"help": "reconstruction ||I - F'(F(I))||^2 weight"})
    w_anchor: float = field(default=1.0, metadata={"help": "phase 2: weight of the labelled batch's supervised "
                                                            "terms (0: self-supervision alone)"})
    w_smooth: float = field(default=1.0, metadata={"help": "phase 2: shading smoothness weight"})
    width: int | None = field(default=None, metadata={"help": "override the first-level width (16)"})
    store_fp16: bool = field(default=False, metadata={"help": "write decomposer.pt / composer.pt in float16 "
                                                               "(half the size, for shipping the full variants)"})
    val_every: int = field(default=100, metadata={"help": "validate every N steps (and at the end)"})
    save_every: int = field(default=50, metadata={"help": "write runs/NAME/last.pt every N steps"})
    seed: int = field(default=0, metadata={"help": "seed for weights, data and sampling"})
    out: str | None = field(default=None, metadata={"help": "run folder (default runs/<model>, numbered if taken)"})
    resume: bool = field(default=False, metadata={"help": "continue the run in --out from its last.pt"})
    threads: int | None = field(default=None, metadata={"help": "CPU threads for PyTorch (default: all cores, "
                                                                "shared between torchrun's processes)"})
    device: str = device_field()
    amp: bool = amp_field()

    def __post_init__(self) -> None:
        check_options(self, min_patch=32)
        if self.model not in COMPOSER_OF:
            raise ValueError(f"--model must be one of {', '.join(COMPOSER_OF)}, got {self.model!r}")
        if self.patch % 32:
            raise ValueError(f"--patch must be a multiple of 32 (five stride-2 levels), got {self.patch}")

    def model_overrides(self) -> dict:
        return {"width": self.width} if self.width is not None else {}


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None]


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-12))


@torch.no_grad()
def evaluate_intrinsic(decomposer: torch.nn.Module, composer: torch.nn.Module | None,
                       triples: list[tuple[np.ndarray, ...]]) -> dict[str, float]:
    """Held-out scores: albedo / shading / reconstruction PSNR, shading correlation, and the trivial split's.
    Without a composer the reconstruction is the image formation model A * S."""
    composer = composer or _Product()
    was = decomposer.training, composer.training
    decomposer.eval(), composer.eval()
    rows = []
    device = next(decomposer.parameters()).device
    for image, albedo, shading in triples:
        i, a_true, s_true = _t(image), _t(albedo), _t(shading)
        a, s = (t.cpu() for t in decomposer(i.to(device)))
        rec = composer(torch.cat([a, s], 1).to(device)).cpu()
        retinex = _t(np.repeat(retinex_shading(image)[..., None], 3, axis=2))
        rows.append([psnr_ssim(a, a_true)[0], psnr_ssim(s, s_true)[0], psnr_ssim(rec, i)[0],
                     _corr(s.mean(1), s_true.mean(1)), psnr_ssim(i, a_true)[0],
                     psnr_ssim(torch.ones_like(s_true), s_true)[0], psnr_ssim(a * s, i)[0],
                     _corr(retinex.mean(1), s_true.mean(1)), psnr_ssim(retinex, s_true)[0]])
    decomposer.train(was[0]), composer.train(was[1])
    m = np.mean(rows, axis=0)
    keys = ("albedo_psnr", "shading_psnr", "reconstruction_psnr", "shading_correlation",
            "trivial_albedo_psnr", "trivial_shading_psnr", "product_psnr",
            "retinex_shading_correlation", "retinex_shading_psnr")
    return {k: round(float(v), 3) for k, v in zip(keys, m)}


def retinex_shading(image: np.ndarray, sigma: float = 8.0) -> np.ndarray:
    """A classical baseline: shading as the Gaussian-blurred brightest channel, scaled to a maximum of 1."""
    from scipy.ndimage import gaussian_filter

    s = gaussian_filter(image.max(axis=2), sigma)
    return np.clip(s / max(float(s.max()), 1e-6), 1e-3, 1.0).astype(np.float32)


class _Product(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :3] * x[:, 3:]


def train_intrinsic(cfg: IntrinsicTrainConfig, progress: bool = True) -> dict:
    """Train F and F'; writes ``<run>/decomposer.pt`` and ``<run>/composer.pt`` (the best validation of the
    self-supervised phase, or of the run without one) and last.pt. Runs on ``cfg.device``; under torchrun, as one
    process of a data-parallel run (train.distributed)."""
    models.check_model_name(cfg.model)
    with started(cfg.device, cfg.amp, cfg.threads) as ctx:
        return _train(cfg, progress, ctx)


def _train(cfg: IntrinsicTrainConfig, progress: bool, ctx: Context) -> dict:
    items = ctx.shard(cfg.batch)
    out = ctx.from_main(lambda: run_folder(cfg))
    keep_freed_memory()
    torch.manual_seed(cfg.seed)
    folder: IntrinsicFolder | None = intrinsic_folder(cfg.data) if cfg.data else None
    photos = unlabeled_photos(cfg.photos)
    val = validation_triples()
    composer_name = COMPOSER_OF[cfg.model]
    dec = ctx.prepare(create_model(cfg.model, **cfg.model_overrides()).train())
    comp = ctx.prepare(create_model(composer_name, **cfg.model_overrides()).train())
    opt = torch.optim.Adam([*dec.parameters(), *comp.parameters()], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, cfg.lr_decay_every, gamma=0.5)
    run = Run(out, cfg, cfg.model, dec, {"composer": comp, "decomposer": dec, "opt": opt, "sched": sched},
              cfg.steps, progress, ctx=ctx)
    dec_ddp, comp_ddp = ctx.wrap(dec), ctx.wrap(comp)
    scaler = ctx.scaler()
    on = lambda *ts: [t.to(ctx.device, non_blocking=True) for t in ts]  # noqa: E731

    def save_best(metrics: dict) -> None:
        meta = run.meta(metrics)
        run.save(weights_checkpoint(cfg.model, dec, meta, cfg.store_fp16), "decomposer.pt")
        run.save(weights_checkpoint(composer_name, comp, meta, cfg.store_fp16), "composer.pt")

    def compose(albedo: torch.Tensor, shading: torch.Tensor) -> torch.Tensor:
        with ctx.autocast():
            return comp_ddp(torch.cat([albedo, shading], 1)).float()

    def decompose(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with ctx.autocast():
            a, s = dec_ddp(image)
        return a.float(), s.float()

    metrics: dict | None = None
    phase_start = cfg.pretrain_steps if cfg.pretrain_steps < cfg.steps else 0
    while run.step < cfg.steps:
        # item i of step s: default_rng([seed, s, 0, i]) for the labelled batch, [seed, s, 1, i] for the photos
        image, albedo, shading = on(*labelled_batch(folder, cfg.patch, item_rngs((cfg.seed, run.step, 0), items)))
        a, s = decompose(image)
        parts = {"albedo": torch.nn.functional.l1_loss(a, albedo),
                 "shading": torch.nn.functional.l1_loss(s, shading),
                 "rec": losses.reconstruction_loss(compose(a, s), image),
                 "rec_true": losses.reconstruction_loss(compose(albedo, shading), image)}
        supervised = cfg.w_albedo * parts["albedo"] + cfg.w_shading * parts["shading"] \
            + cfg.w_rec * (parts["rec"] + parts["rec_true"])
        if run.step < cfg.pretrain_steps:
            total = supervised
        else:
            real, = on(photo_batch(photos, cfg.patch, item_rngs((cfg.seed, run.step, 1), items)))
            a_u, s_u = decompose(real)
            parts["rec_photos"] = losses.reconstruction_loss(compose(a_u, s_u), real)
            parts["smooth"] = losses.smoothness_loss(s_u)
            total = cfg.w_anchor * supervised + cfg.w_rec * parts["rec_photos"] + cfg.w_smooth * parts["smooth"]
        values = run.check({**{k: v.detach().item() for k, v in parts.items()}, "total": total.detach().item()})
        opt.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        run.advance(values)
        if ctx.main and (run.step % cfg.val_every == 0 or run.step == cfg.steps):
            metrics = evaluate_intrinsic(dec, comp, val)
            run.log_validation(metrics)
            # the shipped pair is the best validation of the last phase: self-supervised, when there is one
            if run.improved(metrics["albedo_psnr"] + metrics["shading_psnr"], since=phase_start):
                save_best(metrics)
        if run.step % cfg.save_every == 0 or run.step == cfg.steps:
            run.save_last(metrics)
    return run.close({"validation": metrics, "decomposer": str(out / "decomposer.pt"),
                      "composer": str(out / "composer.pt"), "last": str(out / "last.pt")})
