"""DPED / DPED+ training: generator vs texture discriminator with colour, content, texture and TV losses.

    python -m train dped                              # DPED+ (dped_mobile) on the built-in sample photos
    python -m train dped --model dped --data ~/dped --phone iphone --steps 20000
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import models
from models import TextureDiscriminator, create_model, keep_freed_memory

from . import losses
from .checkpoint import save_atomic
from .data import PairSet, center_crop, open_pairs, sample_batch
from .loop import Run, check_options, run_folder, weights_checkpoint

MIN_PATCH = 24  # the colour loss's 21x21 blur and the texture discriminator's strides need at least this
from .metrics import psnr_ssim


@dataclass
class DPEDTrainConfig:
    model: str = field(default="dped_mobile", metadata={"help": "generator: dped or dped_mobile (DPED+)"})
    data: str | None = field(default=None, metadata={"help": "dataset folder (DPED layout with --phone, or "
                                                              "phone/ + dslr/); default: built-in sample photos"})
    phone: str | None = field(default=None, metadata={"help": "phone of the DPED layout: iphone, sony, blackberry"})
    steps: int = field(default=20000, metadata={"help": "training iterations (DPED: 20K)"})
    batch: int = field(default=50, metadata={"help": "patches per step (DPED: 50)"})
    patch: int = field(default=100, metadata={"help": "patch size in pixels (DPED: 100)"})
    lr: float = field(default=5e-4, metadata={"help": "Adam learning rate, generator and discriminator"})
    lr_decay_every: int = field(default=10000, metadata={"help": "halve the learning rate every N steps"})
    w_content: float = field(default=10.0, metadata={"help": "content loss weight"})
    w_color: float = field(default=0.5, metadata={"help": "colour loss weight"})
    w_texture: float = field(default=1.0, metadata={"help": "texture (adversarial) loss weight"})
    w_tv: float = field(default=2000.0, metadata={"help": "total variation loss weight"})
    vgg_weights: str | None = field(default=None, metadata={"help": "torchvision VGG-19 state dict for the "
                                                                     "content loss (default: SSIM substitute)"})
    width: int | None = field(default=None, metadata={"help": "override the generator width"})
    head: str | None = field(default=None, metadata={"help": "override the output head: tanh or residual"})
    out_layer: str | None = field(default=None, metadata={"help": "override DPED+'s last 9x9 layer: separable, "
                                                                   "full or pointwise_first"})
    val_every: int = field(default=200, metadata={"help": "validate every N steps (and at the end)"})
    val_crop: int = field(default=256, metadata={"help": "centre crop of each validation photo"})
    val_count: int = field(default=32, metadata={"help": "at most this many validation pairs"})
    save_every: int = field(default=100, metadata={"help": "write runs/NAME/last.pt every N steps"})
    seed: int = field(default=0, metadata={"help": "seed for weights, data and sampling"})
    out: str | None = field(default=None, metadata={"help": "run folder (default runs/<model>, numbered if taken)"})
    resume: bool = field(default=False, metadata={"help": "continue the run in --out from its last.pt"})
    threads: int | None = field(default=None, metadata={"help": "CPU threads for PyTorch (default: all cores)"})

    def __post_init__(self) -> None:
        check_options(self, min_patch=MIN_PATCH)

    def model_overrides(self) -> dict:
        return {k: v for k, v in (("width", self.width), ("head", self.head), ("out_layer", self.out_layer))
                if v is not None}


def _content_loss(cfg: DPEDTrainConfig) -> tuple[torch.nn.Module | None, str]:
    if cfg.vgg_weights:
        return losses.VGGContentLoss(cfg.vgg_weights), f"vgg19_relu5_4 ({Path(cfg.vgg_weights).name})"
    return None, "ssim_pool4 (substitute: no --vgg-weights given)"


def _val_tensors(pairs: PairSet, crop: int, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for i in range(len(pairs)):
        got = pairs.pair(i)
        if got is None:
            continue
        a, b = (torch.from_numpy(np.array(center_crop(x, crop))).permute(2, 0, 1)[None] for x in got)
        out.append((a, b))
        if len(out) >= count:
            break
    return out


@torch.no_grad()
def validate(gen: torch.nn.Module, val: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    was_training = gen.training
    gen.eval()
    scores = np.array([psnr_ssim(gen(a), b) + psnr_ssim(a, b) for a, b in val])
    gen.train(was_training)
    psnr, ssim, in_psnr, in_ssim = (float(v) for v in scores.mean(axis=0))
    return {"psnr": psnr, "ssim": ssim, "input_psnr": in_psnr, "input_ssim": in_ssim}


def train_dped(cfg: DPEDTrainConfig, progress: bool = True) -> dict:
    """Train a DPED/DPED+ generator; returns the summary also written to ``<run>/summary.json``."""
    models.check_model_name(cfg.model)
    out = run_folder(cfg)
    keep_freed_memory()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    train_pairs = open_pairs(cfg.data, cfg.phone, "train", cfg.seed)
    val = _val_tensors(open_pairs(cfg.data, cfg.phone, "val", cfg.seed), cfg.val_crop, cfg.val_count)
    if not val:
        raise ValueError("No readable validation pairs")

    # channels_last: oneDNN's fast path for depthwise convs on CPU (2-3x over NCHW here)
    gen = create_model(cfg.model, **cfg.model_overrides()).train().to(memory_format=torch.channels_last)
    disc = TextureDiscriminator().train()
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr)
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr)
    sched_g = torch.optim.lr_scheduler.StepLR(opt_g, cfg.lr_decay_every, gamma=0.5)
    sched_d = torch.optim.lr_scheduler.StepLR(opt_d, cfg.lr_decay_every, gamma=0.5)
    content_fn, content_name = _content_loss(cfg)
    run = Run(out, cfg, cfg.model, gen, {"generator": gen, "discriminator": disc, "opt_g": opt_g, "opt_d": opt_d,
                                         "sched_g": sched_g, "sched_d": sched_d},
              cfg.steps, progress, meta={"content_loss": content_name})

    metrics: dict[str, float] | None = None
    while run.step < cfg.steps:
        # The batch is a function of (seed, step): a resumed run sees exactly the batches it would have seen.
        phone, dslr = sample_batch(train_pairs, cfg.batch, cfg.patch, np.random.default_rng([cfg.seed, run.step]))
        enhanced = gen(phone.contiguous(memory_format=torch.channels_last))

        opt_d.zero_grad(set_to_none=True)
        d_loss = losses.discriminator_loss(disc(losses.grayscale(dslr)), disc(losses.grayscale(enhanced.detach())))
        d_loss.backward()
        opt_d.step()

        opt_g.zero_grad(set_to_none=True)
        parts = {
            "content": content_fn(enhanced, dslr) if content_fn else losses.ssim_content_loss(enhanced, dslr),
            "color": losses.color_loss(enhanced, dslr),
            "texture": losses.texture_loss(disc(losses.grayscale(enhanced))),
            "tv": losses.tv_loss(enhanced),
        }
        total = (cfg.w_content * parts["content"] + cfg.w_color * parts["color"]
                 + cfg.w_texture * parts["texture"] + cfg.w_tv * parts["tv"])
        values = {"total": total.detach().item(), "discriminator": d_loss.detach().item()}
        run.check(values)
        total.backward()
        opt_g.step()
        values.update({k: v.detach().item() for k, v in parts.items()}, lr=sched_g.get_last_lr()[0])
        sched_g.step(); sched_d.step()  # noqa: E702
        run.advance(values)

        if run.step % cfg.val_every == 0 or run.step == cfg.steps:
            metrics = validate(gen, val)
            run.log_validation(metrics)
            with torch.no_grad():
                a, b = val[0]
                run.tb.add_images("val/phone_enhanced_dslr", torch.cat([a, gen.eval()(a).clamp(0, 1), b]), run.step)
                gen.train()
            if run.improved(metrics["psnr"]):
                save_atomic(weights_checkpoint(cfg.model, gen, run.meta(metrics)), out / "best.pt")
        if run.step % cfg.save_every == 0 or run.step == cfg.steps:
            run.save_last(metrics)
    return run.close({"content_loss": content_name, "validation": metrics, "best_val_psnr": run.best,
                      "last": str(out / "last.pt"), "best": str(out / "best.pt")})
