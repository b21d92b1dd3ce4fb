"""DPED / DPED+ training: generator vs texture discriminator with colour, content, texture and TV losses.

    python -m train dped                              # DPED+ (dped_mobile) on the built-in sample photos
    python -m train dped --model dped --data ~/dped --phone iphone --steps 20000
    python -m train dped --teacher dped_mobile --width 32     # distil the shipped DPED+ into a narrower one
    python -m train dped --model dped_mobile_s --qat --teacher dped_mobile_s --w-texture 0 --steps 300 --batch 16
                                                      # quantization-aware fine-tuning of the shipped weights
    python -m train dped --global-branch --shift-only --smooth 0.6 --freeze-local --init dped_mobile \
        --degradation camera+wide --w-texture 0       # image-adaptive DPED+: a global branch on the paper network
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import models
from models import TextureDiscriminator, create_model, keep_freed_memory
from photos.degrade import DEGRADATIONS

from . import losses
from .data import DatasetError, PairSet, center_crop, fresh_degradations, open_pairs, patch_loader, worker_error
from .distributed import Context, amp_field, device_field, started
from .loop import Run, check_network_spec, check_options, network, run_folder, weights_checkpoint
from .qat import QAT_LR, QAT_STEPS, check_qat, qat_network

from .metrics import psnr_ssim

MIN_PATCH = 24  # the colour loss's 21x21 blur and the texture discriminator's strides need at least this
STEPS, LR = 20000, 5e-4            # DPED's
ARCHITECTURE_OPTIONS = ("width", "head", "out_layer", "smooth", "global_branch", "curves_only", "shift_only")


@dataclass
class DPEDTrainConfig:
    model: str = field(default="dped_mobile", metadata={"help": "generator: dped or dped_mobile (DPED+)"})
    data: str | None = field(default=None, metadata={"help": "dataset folder (DPED layout with --phone, or "
                                                              "phone/ + dslr/); default: built-in sample photos"})
    phone: str | None = field(default=None, metadata={"help": "phone of the DPED layout: iphone, sony, blackberry"})
    steps: int | None = field(default=None, metadata={"help": "training iterations",
                                                      "default": f"{STEPS} (DPED), {QAT_STEPS} with --qat"})
    batch: int = field(default=50, metadata={"help": "patches per step (DPED: 50)"})
    patch: int = field(default=100, metadata={"help": "patch size in pixels (DPED: 100)"})
    lr: float | None = field(default=None, metadata={"help": "Adam learning rate, generator and discriminator",
                                                     "default": f"{LR}, {QAT_LR} with --qat"})
    lr_decay_every: int = field(default=10000, metadata={"help": "halve the learning rate every N steps"})
    w_content: float = field(default=10.0, metadata={"help": "content loss weight"})
    w_color: float = field(default=0.5, metadata={"help": "colour loss weight"})
    w_texture: float = field(default=1.0, metadata={"help": "texture (adversarial) loss weight"})
    w_tv: float = field(default=2000.0, metadata={"help": "total variation loss weight"})
    w_pixel: float = field(default=0.0, metadata={"help": "weight of the mean absolute error at full resolution "
                                                          "(noise counts, which the blurred colour loss does not "
                                                          "see); 0: the paper's losses only"})
    w_global: float = field(default=0.5, metadata={"help": "global branch: weight of the colour loss on the input "
                                                           "after the branch's curves alone (the branch must get "
                                                           "the global colour and tone right by itself)"})
    vgg_weights: str | None = field(default=None, metadata={"help": "torchvision VGG-19 state dict for the "
                                                                     "content loss (default: SSIM substitute)"})
    content_pool: int = field(default=4, metadata={"help": "SSIM substitute: average-pool both images by this "
                                                            "factor first (4: structure only, as the VGG loss; 1: "
                                                            "full resolution, so noise counts too)"})
    teacher: str | None = field(default=None, metadata={"help": "distillation: a model name (its shipped weights) "
                                                                "or a checkpoint; its outputs replace the DSLR side "
                                                                "as the training target (validation still scores "
                                                                "against the DSLR side)"})
    width: int | None = field(default=None, metadata={"help": "override the generator width"})
    head: str | None = field(default=None, metadata={"help": "override the output head: tanh or residual"})
    out_layer: str | None = field(default=None, metadata={"help": "override DPED+'s last 9x9 layer: separable, "
                                                                   "full or pointwise_first"})
    smooth: float | None = field(default=None, metadata={"help": "blend the output with its 3x3 mean by this weight "
                                                                  "(0 to 1; models.layers.Smoothing): less of the "
                                                                  "noise the residual head passes through"})
    global_branch: bool = field(default=False, metadata={"help": "add the image-adaptive global branch (a "
                                                                  "thumbnail encoder: per-image curves and feature "
                                                                  "scale/shift, models.globe)"})
    degradation: str = field(default="camera", metadata={"help": "built-in photos only: 'camera' (fixed pairs of "
                                                                 "the paper networks' training), 'wide' (every "
                                                                 "patch degraded afresh over the ranges phones "
                                                                 "produce, photos.degrade.WIDE) or 'camera+wide' "
                                                                 "(afresh, half from each)"})
    branch_lr_scale: float = field(default=10.0, metadata={"help": "learning rate of the global branch as a "
                                                                   "multiple of --lr (a new head on a pretrained "
                                                                   "network must learn faster than the network "
                                                                   "adapts around it)"})
    curves_only: bool = field(default=False, metadata={"help": "global branch: per-image curves on the input only, "
                                                              "without the scale and shift of the stem's features "
                                                              "(cheaper at full resolution)"})
    shift_only: bool = field(default=False, metadata={"help": "global branch: shift the stem's features per photo "
                                                              "without scaling them (one pass over them fewer)"})
    freeze_local: bool = field(default=False, metadata={"help": "train the global branch alone: the local network "
                                                                "keeps its --init weights and BatchNorm statistics"})
    init: str | None = field(default=None, metadata={"help": "start from these weights: a model name (its shipped "
                                                             "weights) or a checkpoint; layers they lack (a new "
                                                             "global branch) keep their initialisation"})
    qat: bool = field(default=False, metadata={"help": "quantization-aware fine-tuning of the --init network "
                                                       "(default: the --model's shipped weights), as its int8 file "
                                                       "computes (train.qat); its checkpoints export as usual"})
    val_every: int = field(default=200, metadata={"help": "validate every N steps (and at the end)"})
    val_crop: int = field(default=256, metadata={"help": "centre crop of each validation photo"})
    val_count: int = field(default=32, metadata={"help": "at most this many validation pairs"})
    save_every: int = field(default=100, metadata={"help": "write runs/NAME/last.pt every N steps"})
    seed: int = field(default=0, metadata={"help": "seed for weights, data and sampling"})
    out: str | None = field(default=None, metadata={"help": "run folder (default runs/<model>, numbered if taken)"})
    resume: bool = field(default=False, metadata={"help": "continue the run in --out from its last.pt"})
    threads: int | None = field(default=None, metadata={"help": "CPU threads for PyTorch (default: all cores, "
                                                                "shared between torchrun's processes)"})
    device: str = device_field()
    amp: bool = amp_field()
    workers: int | None = field(default=None, metadata={"help": "DataLoader worker processes decoding and cropping "
                                                                "patches (default: 0 for the built-in photos, which "
                                                                "are in memory; for folders 1 on CPU, up to 8 per "
                                                                "GPU)"})

    def __post_init__(self) -> None:
        if self.steps is None:
            self.steps = QAT_STEPS if self.qat else STEPS
        if self.lr is None:
            self.lr = QAT_LR if self.qat else LR
        check_options(self, min_patch=MIN_PATCH)
        if self.degradation not in DEGRADATIONS:
            raise ValueError(f"--degradation {self.degradation!r}: known: {', '.join(DEGRADATIONS)}")
        if self.degradation != "camera" and self.data is not None:
            raise ValueError("--degradation applies to the built-in photos; a --data folder brings its own pairs")
        if self.curves_only and not self.global_branch:
            raise ValueError("--curves-only shapes the global branch: it needs --global-branch")
        if self.shift_only and (self.curves_only or not self.global_branch):
            raise ValueError("--shift-only shapes the global branch's feature path: it needs --global-branch, "
                             "without --curves-only")
        if self.freeze_local and not (self.global_branch and self.init):
            raise ValueError("--freeze-local trains the global branch alone: it needs --global-branch and --init")
        if self.qat:
            self._check_qat()   # --init too, which it defaults to --model
        elif self.init:
            check_network_spec("--init", self.init)
        if self.teacher:
            check_network_spec("--teacher", self.teacher)

    def _check_qat(self) -> None:
        if self.freeze_local:
            raise ValueError("--qat trains the whole network: drop --freeze-local")
        check_qat(self, ARCHITECTURE_OPTIONS)

    def model_overrides(self) -> dict:
        chosen = {k: v for k, v in (("width", self.width), ("head", self.head), ("out_layer", self.out_layer),
                                    ("smooth", self.smooth)) if v is not None}
        if not self.global_branch:
            return chosen
        return {**chosen, "global_branch": True, **({"global_film": False} if self.curves_only else {}),
                **({"film_scale": False} if self.shift_only else {})}


def freeze_local_statistics(gen: torch.nn.Module) -> None:
    """Keep the local network's BatchNorms in eval mode (their running statistics, not the batch's) while the
    global branch trains."""
    for name, m in gen.named_modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and not name.startswith("globe."):
            m.eval()


def init_weights(model: torch.nn.Module, spec: str) -> dict:
    """Copy the tensors of ``spec`` (a model's shipped weights or a checkpoint) whose names and shapes match;
    returns what was copied and what kept its initialisation."""
    from models.registry import WEIGHTS_DIR, load_checkpoint

    state = load_checkpoint(WEIGHTS_DIR / f"{spec}.pt" if spec in models.list_models() else spec)["state_dict"]
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise ValueError(f"--init {spec}: none of its tensors fits {type(model).__name__}")
    model.load_state_dict(matched, strict=False)
    return {"init": spec, "copied": len(matched), "kept_initialisation": sorted(set(own) - set(matched))}


def _content_loss(cfg: DPEDTrainConfig) -> tuple[torch.nn.Module | None, str]:
    if cfg.vgg_weights:
        return losses.VGGContentLoss(cfg.vgg_weights), f"vgg19_relu5_4 ({Path(cfg.vgg_weights).name})"
    return None, f"ssim_pool{cfg.content_pool} (substitute: no --vgg-weights given)"


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
    device = next(gen.parameters()).device
    scores = np.array([psnr_ssim(gen(a.to(device)), b.to(device)) + psnr_ssim(a, b) for a, b in val])
    gen.train(was_training)
    psnr, ssim, in_psnr, in_ssim = (float(v) for v in scores.mean(axis=0))
    return {"psnr": psnr, "ssim": ssim, "input_psnr": in_psnr, "input_ssim": in_ssim}


def load_teacher(spec: str) -> torch.nn.Module:
    """The network to distil from: a registered model name (shipped weights) or a checkpoint of a photo enhancer,
    in eval mode; raises ValueError (unknown name, or not a 3-channel enhancer) or CheckpointError."""
    check_network_spec("--teacher", spec)
    teacher = network(spec)
    contract = teacher.contract
    if contract.output_names != ("enhanced",) or contract.channels != 3:
        raise ValueError(f"--teacher {spec}: a teacher must enhance photos (3 channels in, 'enhanced' out)")
    return teacher.eval().requires_grad_(False)


def default_workers(cfg: DPEDTrainConfig, ctx: Context) -> int:
    """DataLoader workers when --workers is not given: none for the in-memory built-in photos; for folders one on
    CPU (decoding ahead while the cores train) and up to 8 per GPU."""
    if cfg.workers is not None:
        return cfg.workers
    if cfg.data is None:
        return 0
    if ctx.device.type == "cpu":
        return 1
    return max(1, min(8, (os.cpu_count() or 1) // ctx.local_world_size))


def train_dped(cfg: DPEDTrainConfig, progress: bool = True) -> dict:
    """Train a DPED/DPED+ generator; returns the summary also written to ``<run>/summary.json``.

    Runs on ``cfg.device``; under torchrun, as one process of a data-parallel run (train.distributed)."""
    models.check_model_name(cfg.model)
    with started(cfg.device, cfg.amp, cfg.threads) as ctx:
        return _train(cfg, progress, ctx)


def _train(cfg: DPEDTrainConfig, progress: bool, ctx: Context) -> dict:
    items = ctx.shard(cfg.batch)
    out = ctx.from_main(lambda: run_folder(cfg))
    keep_freed_memory()
    torch.manual_seed(cfg.seed)
    train_pairs = fresh_degradations(cfg.degradation) if cfg.degradation != "camera" else \
        open_pairs(cfg.data, cfg.phone, "train", cfg.seed)
    val = _val_tensors(open_pairs(cfg.data, cfg.phone, "val", cfg.seed), cfg.val_crop, cfg.val_count)
    if not val:
        raise ValueError("No readable validation pairs")

    # channels_last: oneDNN's fast path for depthwise convs on CPU (2-3x over NCHW here)
    if cfg.qat:  # the --init network as it is, trained as its int8 file computes
        gen, init = qat_network(cfg.init)
    else:
        gen = create_model(cfg.model, **cfg.model_overrides())
        init = init_weights(gen, cfg.init) if cfg.init else None
    gen = ctx.prepare(gen.train())
    if not cfg.qat:   # the QAT graph's fake quantization gives contiguous gradients (DDP warns when layouts differ)
        gen = gen.to(memory_format=torch.channels_last)
    thumb = gen.contract.thumbnail or 0
    disc = ctx.prepare(TextureDiscriminator().train())
    branch = [p for n, p in gen.named_parameters() if n.startswith("globe.")]
    local = [p for n, p in gen.named_parameters() if not n.startswith("globe.")]
    if cfg.freeze_local:
        for p in local:
            p.requires_grad_(False)
        local = []
    groups = [{"params": local}, {"params": branch, "lr": cfg.lr * cfg.branch_lr_scale}]
    opt_g = torch.optim.Adam([g for g in groups if g["params"]], lr=cfg.lr)
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr)
    sched_g = torch.optim.lr_scheduler.StepLR(opt_g, cfg.lr_decay_every, gamma=0.5)
    sched_d = torch.optim.lr_scheduler.StepLR(opt_d, cfg.lr_decay_every, gamma=0.5)
    content_fn, content_name = _content_loss(cfg)
    if content_fn is not None:
        content_fn.to(ctx.device)
    teacher = load_teacher(cfg.teacher).to(ctx.device) if cfg.teacher else None
    run = Run(out, cfg, cfg.model, gen, {"generator": gen, "discriminator": disc, "opt_g": opt_g, "opt_d": opt_d,
                                         "sched_g": sched_g, "sched_d": sched_d},
              cfg.steps, progress, meta={"content_loss": content_name, "teacher": cfg.teacher, "init": init}, ctx=ctx)
    gen_ddp, disc_ddp = ctx.wrap(gen), ctx.wrap(disc)
    scaler = ctx.scaler()
    workers = default_workers(cfg, ctx)
    # Batches are a function of (seed, step): a resumed run sees exactly the batches it would have seen, and the
    # processes of a distributed run each draw their own items of the same global batch.
    loader = patch_loader(train_pairs, cfg.patch, cfg.seed, run.step, cfg.steps, items, workers,
                          pin_memory=ctx.device.type == "cuda", thumb=thumb)

    metrics: dict[str, float] | None = None
    if cfg.qat and ctx.main and run.step == 0:   # where QAT starts: the int8 simulation of the --init weights
        metrics = validate(gen, val)
        run.log_validation(metrics)
        run.improved(metrics["psnr"])
        run.save(weights_checkpoint(cfg.model, gen, run.meta(metrics)), "best.pt")
    try:
        for phone, dslr, *thumbs in loader:
            if cfg.freeze_local:
                freeze_local_statistics(gen)
            phone = phone.to(ctx.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            dslr = dslr.to(ctx.device, non_blocking=True)
            thumbs = [t.to(ctx.device, non_blocking=True) for t in thumbs]  # the photos' thumbnails (global branch)
            if teacher is not None:  # distillation: the teacher's enhancement is the target
                with torch.no_grad(), ctx.autocast():
                    taught = teacher(phone, *thumbs) if teacher.contract.thumbnail else teacher(phone)
                    dslr = taught.float().clamp(0, 1).contiguous()
            with ctx.autocast():
                enhanced, curved = gen_ddp(phone, *thumbs, with_global=True)
                real_logits = disc_ddp(losses.grayscale(dslr))
                fake_logits = disc_ddp(losses.grayscale(enhanced.detach()))
            enhanced = enhanced.float()  # losses in float32
            opt_d.zero_grad(set_to_none=True)
            d_loss = losses.discriminator_loss(real_logits.float(), fake_logits.float())
            scaler.scale(d_loss).backward()
            scaler.step(opt_d)

            opt_g.zero_grad(set_to_none=True)
            with ctx.autocast():  # D itself, not its DDP wrapper: its gradients here are discarded, not all-reduced
                texture_logits = disc(losses.grayscale(enhanced))
            parts = {
                "content": (content_fn(enhanced, dslr) if content_fn
                            else losses.ssim_content_loss(enhanced, dslr, cfg.content_pool)),
                "color": losses.color_loss(enhanced, dslr),
                "texture": ctx.global_sum(losses.texture_loss(texture_logits.float())),  # summed over the batch
                "tv": losses.tv_loss(enhanced),
            }
            if cfg.w_pixel:
                parts["pixel"] = (enhanced - dslr).abs().mean()
            if curved is not None:  # the global branch's curves alone, on the colour loss
                parts["global"] = losses.color_loss(curved.float(), dslr)
            total = (cfg.w_content * parts["content"] + cfg.w_color * parts["color"]
                     + cfg.w_texture * parts["texture"] + cfg.w_tv * parts["tv"]
                     + cfg.w_global * parts.get("global", 0.0) + cfg.w_pixel * parts.get("pixel", 0.0))
            values = run.check({"total": total.detach().item(), "discriminator": d_loss.detach().item(),
                                **{k: v.detach().item() for k, v in parts.items()}, "lr": sched_g.get_last_lr()[0]})
            scaler.scale(total).backward()
            scaler.step(opt_g)
            scaler.update()
            sched_g.step(); sched_d.step()  # noqa: E702
            run.advance(values)

            if ctx.main and (run.step % cfg.val_every == 0 or run.step == cfg.steps):
                metrics = validate(gen.recalibrated() if cfg.qat else gen, val)
                run.log_validation(metrics)
                with torch.no_grad():
                    a, b = (t.to(ctx.device) for t in val[0])
                    run.log_images("val/phone_enhanced_dslr", torch.cat([a, gen.eval()(a).clamp(0, 1), b]))
                    gen.train()
                if run.improved(metrics["psnr"]):
                    run.save(weights_checkpoint(cfg.model, gen, run.meta(metrics)), "best.pt")
            if run.step % cfg.save_every == 0 or run.step == cfg.steps:
                run.save_last(metrics)
    except DatasetError as err:
        raise DatasetError(worker_error(err)) from None  # a worker's error arrives wrapped in its traceback
    return run.close({"content_loss": content_name, "validation": metrics, "best_val_psnr": run.best,
                      "last": str(out / "last.pt"), "best": str(out / "best.pt"), "data_workers": workers,
                      "teacher": cfg.teacher})
