"""DPED / DPED+ training: generator vs texture discriminator with colour, content, texture and TV losses.

    python -m train dped                              # DPED+ (dped_mobile) on the built-in sample photos
    python -m train dped --model dped --data ~/dped --phone iphone --steps 20000
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import models
from models import TextureDiscriminator, create_model, keep_freed_memory, model_config

from . import losses
from .checkpoint import save_atomic, weights_only
from .data import PairSet, center_crop, open_pairs, sample_batch
from .loop import TrainingDiverged, run_folder
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
    val_every: int = field(default=200, metadata={"help": "validate every N steps (and at the end)"})
    val_crop: int = field(default=256, metadata={"help": "centre crop of each validation photo"})
    val_count: int = field(default=32, metadata={"help": "at most this many validation pairs"})
    save_every: int = field(default=100, metadata={"help": "write runs/NAME/last.pt every N steps"})
    seed: int = field(default=0, metadata={"help": "seed for weights, data and sampling"})
    out: str | None = field(default=None, metadata={"help": "run folder (default runs/<model>, numbered if taken)"})
    resume: bool = field(default=False, metadata={"help": "continue the run in --out from its last.pt"})
    threads: int | None = field(default=None, metadata={"help": "CPU threads for PyTorch (default: all cores)"})

    def model_overrides(self) -> dict:
        return {k: v for k, v in (("width", self.width), ("head", self.head)) if v is not None}


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

    step, best_psnr, elapsed = 0, -math.inf, 0.0
    if cfg.resume:
        state = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
        ts = state["train_state"]
        gen.load_state_dict(state["state_dict"])
        disc.load_state_dict(ts["discriminator"])
        opt_g.load_state_dict(ts["opt_g"]); opt_d.load_state_dict(ts["opt_d"])  # noqa: E702
        sched_g.load_state_dict(ts["sched_g"]); sched_d.load_state_dict(ts["sched_d"])  # noqa: E702
        step, best_psnr, elapsed = ts["step"], ts["best_psnr"], ts["elapsed_s"]

    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    from torch.utils.tensorboard import SummaryWriter  # heavy import, only when training
    tb = SummaryWriter(str(out / "tb"))

    def checkpoint(metrics: dict[str, float] | None) -> dict:
        return {
            "model": cfg.model, "config": model_config(gen), "state_dict": gen.state_dict(),
            "meta": {"step": step, "content_loss": content_name, "train_config": asdict(cfg),
                     "validation": metrics or {}, "elapsed_s": round(elapsed, 1), "torch": str(torch.__version__),
                     "date": datetime.now(timezone.utc).isoformat(timespec="seconds")},
        }

    def save_last(metrics: dict[str, float] | None) -> None:
        ckpt = checkpoint(metrics)
        ckpt["train_state"] = {"discriminator": disc.state_dict(), "opt_g": opt_g.state_dict(),
                               "opt_d": opt_d.state_dict(), "sched_g": sched_g.state_dict(),
                               "sched_d": sched_d.state_dict(), "step": step, "best_psnr": best_psnr,
                               "elapsed_s": elapsed}
        save_atomic(ckpt, out / "last.pt")

    metrics: dict[str, float] | None = None
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.model}", disable=not progress, dynamic_ncols=True)
    t0 = time.perf_counter() - elapsed
    while step < cfg.steps:
        # The batch is a function of (seed, step): a resumed run sees exactly the batches it would have seen.
        phone, dslr = sample_batch(train_pairs, cfg.batch, cfg.patch, np.random.default_rng([cfg.seed, step]))
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
        total_value, d_value = total.detach().item(), d_loss.detach().item()
        if not math.isfinite(total_value) or not math.isfinite(d_value) or total_value > 1e8:
            bar.close()
            raise TrainingDiverged(
                f"training diverged at step {step + 1}: generator loss {total_value:.4g}, discriminator loss "
                f"{d_value:.4g}. Last good checkpoint kept: {out / 'last.pt'} "
                f"(step {step - step % cfg.save_every}). Try a lower --lr or check the data.")
        total.backward()
        opt_g.step()
        part_values = {k: v.detach().item() for k, v in parts.items()}
        sched_g.step(); sched_d.step()  # noqa: E702
        step += 1
        elapsed = time.perf_counter() - t0

        if step % 10 == 0 or step == cfg.steps:
            tb.add_scalar("loss/total", total_value, step)
            tb.add_scalar("loss/discriminator", d_value, step)
            for k, v in part_values.items():
                tb.add_scalar(f"loss/{k}", v, step)
            tb.add_scalar("lr", sched_g.get_last_lr()[0], step)
        if step % cfg.val_every == 0 or step == cfg.steps:
            metrics = validate(gen, val)
            for k, v in metrics.items():
                tb.add_scalar(f"val/{k}", v, step)
            with torch.no_grad():
                a, b = val[0]
                tb.add_images("val/phone_enhanced_dslr", torch.cat([a, gen.eval()(a).clamp(0, 1), b]), step)
                gen.train()
            if metrics["psnr"] > best_psnr:
                best_psnr = metrics["psnr"]
                save_atomic(weights_only(checkpoint(metrics)), out / "best.pt")
        if step % cfg.save_every == 0 or step == cfg.steps:
            save_last(metrics)
        post = {k: f"{v:.3g}" for k, v in part_values.items()}
        if metrics:
            post.update(val_psnr=f"{metrics['psnr']:.2f}", val_ssim=f"{metrics['ssim']:.3f}")
        bar.set_postfix(post, refresh=False)
        bar.update(1)
    bar.close()
    tb.close()

    summary = {"run": str(out), "model": cfg.model, "steps": step, "wall_s": round(elapsed, 1),
               "content_loss": content_name, "validation": metrics, "best_val_psnr": best_psnr,
               "last": str(out / "last.pt"), "best": str(out / "best.pt")}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
