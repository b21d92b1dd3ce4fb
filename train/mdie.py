"""MDIE training (paper 3.2.2-3.2.3): the multi-domain generator G between the intrinsic networks F and F'.

    python -m train mdie                                   # built-in colour / noise / texture pairs
    python -m train mdie --noise ~/dnd --color ~/fivek --texture ~/night --steps 20000
    python -m train mdie --qat --batch 8 --patch 128 --val-every 50   # quantization-aware fine-tuning

Each step takes one dataset i (round robin) and a batch of its (low, high) pairs; x = F(image) are their
intrinsics (albedo + shading, 6 channels) with real label l (0 low, 1 high). G translates x to the flipped label
t = 1 - l under the mask vector of dataset i. Losses, with the paper's weights lambda_cls = 1, lambda_cyc = 10:

    L_D = L_adv(D) + lambda_cls * L_cls^r                     (cls: only dataset i's logit, the mask vector)
    L_G = L_adv(G) + lambda_cls * L_cls^f + lambda_cyc * L_cyc + L_rec
    L_rec = alpha * ||I_LQ - F'(F(I_LQ))||^2 + beta * ||I_HQ - F'(G(F(I_LQ), high))||^2

L_rec is the paper's pair of reconstruction terms read literally: (A_LQ, S_LQ) = F(I_LQ) must compose back to the
low-quality input, and (A_HQ, S_HQ) = G(F(I_LQ), c_i = high) must compose to the high-quality image of the pair.
The other direction (high to low) is learned StarGAN's way only, through L_adv, L_cls and L_cyc: a clean image
cannot be paired with one particular noise draw. F and F' start from the trained intrinsic weights and are
fine-tuned with G (a smaller learning rate). L_adv is the cross-entropy form (no gradient penalty: cheaper on a
CPU).

``--qat`` fine-tunes the deployed pipeline instead (F, G with every label 'high quality', F'), traced whole as its
int8 file computes it (``train.qat``), toward its own float output: the mean squared error that the export's
fidelity gate measures, on both sides of the three datasets' pairs. Labels, D and the losses above have no part in
it: the int8 file has one label, and the float pipeline already learned what it should do.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

import models
from models import DOMAINS, MDIEDiscriminator, create_model, keep_freed_memory
from models.registry import load_checkpoint, weights_file

from . import losses
from .data import center_crop, item_rngs, sample_batch
from .distributed import Context, amp_field, device_field, started
from .domains import domain_pairs
from .loop import Run, check_options, load_last, network, run_folder, weights_checkpoint
from .metrics import psnr_ssim
from .qat import check_qat, qat_network

STEPS, LR = 900, 1e-3
QAT_STEPS, QAT_LR = 400, 3e-5   # --qat: the best of 1e-5, 3e-5 and 1e-4 measured on the shipped pipeline (README)


@dataclass
class MDIETrainConfig:
    model: str = field(default="mdie", metadata={"help": "the pipeline to train (mdie)"})
    decomposer: str | None = field(default=None, metadata={"help": "F checkpoint (default: shipped "
                                                                    "intrinsic_decomposer_mobile weights)"})
    composer: str | None = field(default=None, metadata={"help": "F' checkpoint (default: shipped "
                                                                  "intrinsic_composer_mobile weights)"})
    color: str | None = field(default=None, metadata={"help": "colour dataset folder: original/ + retouched/"})
    noise: str | None = field(default=None, metadata={"help": "noise dataset folder: noisy/ + clean/"})
    texture: str | None = field(default=None, metadata={"help": "texture dataset folder: degraded/ + dslr/"})
    steps: int | None = field(default=None, metadata={"help": "training iterations (one dataset per step, in turn)",
                                                      "default": f"{STEPS}, {QAT_STEPS} with --qat"})
    batch: int = field(default=4, metadata={"help": "pairs per step (2x images: both sides)"})
    patch: int = field(default=96, metadata={"help": "patch size (a multiple of 32)"})
    lr: float | None = field(default=None, metadata={"help": "Adam learning rate of G and D (with --qat: of the "
                                                             "whole pipeline)",
                                                     "default": f"{LR}, {QAT_LR} with --qat"})
    lr_intrinsic: float = field(default=1e-4, metadata={"help": "learning rate of F and F' (fine-tuning)"})
    lambda_cls: float = field(default=1.0, metadata={"help": "domain classification weight (paper: 1)"})
    lambda_cyc: float = field(default=10.0, metadata={"help": "cycle reconstruction weight (paper: 10)"})
    alpha: float = field(default=100.0, metadata={"help": "weight of ||I_LQ - F'(F(I_LQ))||^2"})
    beta: float = field(default=1000.0, metadata={"help": "weight of ||I_HQ - F'(G(F(I_LQ), high))||^2 (at 100, "
                                                           "the cycle term, which cannot re-add a noise draw, "
                                                           "cancels it)"})
    generator_width: int | None = field(default=None, metadata={"help": "override G's width (32)"})
    blocks: int | None = field(default=None, metadata={"help": "override G's residual blocks (3)"})
    qat: bool = field(default=False, metadata={"help": "quantization-aware fine-tuning of the --init pipeline as its "
                                                       "int8 file computes (train.qat), toward its own float output; "
                                                       "its checkpoints export as usual"})
    init: str | None = field(default=None, metadata={"help": "with --qat: the pipeline to fine-tune, 'mdie' (its "
                                                             "shipped weights, the default) or a checkpoint of it"})
    val_every: int = field(default=100, metadata={"help": "validate every N steps (and at the end)"})
    val_crop: int = field(default=256, metadata={"help": "centre crop of each validation photo"})
    save_every: int = field(default=50, metadata={"help": "write runs/NAME/last.pt every N steps"})
    seed: int = field(default=0, metadata={"help": "seed for weights, data and sampling"})
    out: str | None = field(default=None, metadata={"help": "run folder (default runs/mdie, numbered if taken)"})
    resume: bool = field(default=False, metadata={"help": "continue the run in --out from its last.pt"})
    threads: int | None = field(default=None, metadata={"help": "CPU threads for PyTorch (default: all cores, "
                                                                "shared between torchrun's processes)"})
    device: str = device_field()
    amp: bool = amp_field()

    def __post_init__(self) -> None:
        if self.steps is None:
            self.steps = QAT_STEPS if self.qat else STEPS
        if self.lr is None:
            self.lr = QAT_LR if self.qat else LR
        check_options(self, min_patch=32)
        if self.model != "mdie":
            raise ValueError(f"python -m train mdie trains the 'mdie' pipeline, not {self.model!r}")
        if self.patch % 32:
            raise ValueError(f"--patch must be a multiple of 32, got {self.patch}")
        if self.qat:
            check_qat(self, ("decomposer", "composer", "generator_width", "blocks"))
        elif self.init is not None:
            raise ValueError("--init names the pipeline --qat fine-tunes; training starts from --decomposer and "
                             "--composer")

    def model_overrides(self) -> dict:
        return {k: v for k, v in (("generator_width", self.generator_width), ("blocks", self.blocks))
                if v is not None}


def labels(domain: int, high: torch.Tensor) -> torch.Tensor:
    """(N, 6) label vectors: dataset ``domain`` known (mask), its attribute set to ``high`` (N,) in {0, 1}."""
    c = torch.zeros(len(high), 2 * len(DOMAINS), device=high.device)
    c[:, domain], c[:, len(DOMAINS) + domain] = high.float(), 1.0
    return c


def _intrinsic_weights(name: str, path: str | None) -> dict:
    """F or F' (the mobile variants MDIE deploys): a checkpoint from ``python -m train intrinsic``."""
    path = weights_file(name, path)
    if not path.is_file():
        raise FileNotFoundError(f"MDIE starts from trained intrinsic networks: {path} not found. "
                                f"Run `python -m train intrinsic` first and pass --decomposer/--composer.")
    ckpt = load_checkpoint(path)
    if ckpt["model"] != name:
        raise models.CheckpointError(f"{path} holds {ckpt['model']!r}; expected {name!r}")
    return ckpt


# --- measured attributes, for validation and the effect of each label ---

def noise_sigma(img: np.ndarray) -> float:
    """Estimated Gaussian noise sigma (scikit-image, wavelet-based) averaged over channels."""
    from skimage.restoration import estimate_sigma
    return float(estimate_sigma(img, channel_axis=-1, average_sigmas=True))


def color_distance(img: np.ndarray, ref: np.ndarray) -> float:
    """Distance of the per-channel mean and standard deviation (colour balance and contrast) to ``ref``'s."""
    a = np.concatenate([img.mean((0, 1)), img.std((0, 1))])
    b = np.concatenate([ref.mean((0, 1)), ref.std((0, 1))])
    return float(np.abs(a - b).sum())


def sharpness(img: np.ndarray) -> float:
    """Variance of the Laplacian of the luminance (higher: more fine detail)."""
    from scipy.ndimage import laplace
    return float(laplace(img.mean(2)).var())


ATTRIBUTE = {"color": ("color_distance", lambda o, hq: color_distance(o, hq)),
             "noise": ("noise_sigma", lambda o, hq: noise_sigma(o)),
             "texture": ("sharpness", lambda o, hq: sharpness(o))}


@torch.no_grad()
def evaluate_mdie(model: torch.nn.Module, val: dict[str, list[tuple[np.ndarray, np.ndarray]]]) -> dict:
    """Per dataset: PSNR against the high-quality side and its attribute, for the input, the dataset's low and
    high labels, and the deployed label (all high quality)."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    out: dict = {}
    for domain, pairs in val.items():
        i = DOMAINS.index(domain)
        key, measure = ATTRIBUTE[domain]
        rows: dict[str, list] = {}
        for lq, hq in pairs:
            x = torch.from_numpy(np.array(lq, dtype=np.float32)).permute(2, 0, 1)[None]
            y = torch.from_numpy(np.array(hq, dtype=np.float32)).permute(2, 0, 1)[None]
            on = lambda t: t.to(device)  # noqa: E731
            variants = {"input": x, "target": y,
                        "low": model(on(x), on(labels(i, torch.zeros(1)))).cpu(),
                        "high": model(on(x), on(labels(i, torch.ones(1)))).cpu(), "all_high": model(on(x)).cpu()}
            for name, img in variants.items():
                arr = img[0].clamp(0, 1).permute(1, 2, 0).numpy()
                rows.setdefault(name, []).append((psnr_ssim(img, y)[0], measure(arr, hq)))
        out[domain] = {name: {"psnr": round(float(np.mean([r[0] for r in v])), 3) if name != "target" else None,
                              key: round(float(np.mean([r[1] for r in v])), 5)} for name, v in rows.items()}
    model.train(was)
    return out


def _score(metrics: dict) -> float:
    return float(np.mean([m["high"]["psnr"] for m in metrics.values()]))


def _flat(metrics: dict) -> dict[str, float]:
    return {f"{d}/{label}/{k}": v for d, m in metrics.items() for label, vals in m.items() for k, v in vals.items()
            if v is not None}


def train_mdie(cfg: MDIETrainConfig, progress: bool = True) -> dict:
    """Train G and D (and fine-tune F, F'); writes ``<run>/best.pt`` (the mdie pipeline) and last.pt. Runs on
    ``cfg.device``; under torchrun, as one process of a data-parallel run (train.distributed)."""
    with started(cfg.device, cfg.amp, cfg.threads) as ctx:
        return (_train_qat if cfg.qat else _train)(cfg, progress, ctx)


def _train(cfg: MDIETrainConfig, progress: bool, ctx: Context) -> dict:
    items = ctx.shard(cfg.batch)
    out = ctx.from_main(lambda: run_folder(cfg))
    keep_freed_memory()
    torch.manual_seed(cfg.seed)
    if not cfg.resume:  # a missing or wrong F / F' is said before the photos are prepared
        dec = _intrinsic_weights("intrinsic_decomposer_mobile", cfg.decomposer)
        comp = _intrinsic_weights("intrinsic_composer_mobile", cfg.composer)
    train_sets, val = _domain_sets(cfg)

    if cfg.resume:  # the run's own pipeline config (F and F' are in its last.pt)
        net = create_model("mdie", **load_last(out)["config"])
    else:
        net = create_model("mdie", width=dec["config"].get("width", 16), **cfg.model_overrides())
        try:
            net.decomposer.load_state_dict(dec["state_dict"])
            net.composer.load_state_dict(comp["state_dict"])
        except RuntimeError as err:
            raise models.CheckpointError(f"the decomposer and composer checkpoints do not fit together: "
                                         f"{str(err).splitlines()[0][:200]}") from None
    net = ctx.prepare(net.train())
    disc = ctx.prepare(MDIEDiscriminator().train())
    opt_g = torch.optim.Adam([{"params": net.generator.parameters()},
                              {"params": [*net.decomposer.parameters(), *net.composer.parameters()],
                               "lr": cfg.lr_intrinsic}], lr=cfg.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    run = Run(out, cfg, "mdie", net, {"mdie": net, "discriminator": disc, "opt_g": opt_g, "opt_d": opt_d},
              cfg.steps, progress, ctx=ctx)
    decompose, generate, compose = (ctx.wrap(m) for m in (net.decomposer, net.generator, net.composer))
    disc_ddp = ctx.wrap(disc)
    scaler = ctx.scaler()
    b = len(items)  # this process's pairs of the global batch

    metrics: dict | None = None
    while run.step < cfg.steps:
        i = run.step % len(DOMAINS)
        low, high = sample_batch(train_sets[i], cfg.patch, item_rngs((cfg.seed, run.step), items))
        low, high = low.to(ctx.device, non_blocking=True), high.to(ctx.device, non_blocking=True)
        images = torch.cat([low, high])
        real_label = torch.cat([torch.zeros(b), torch.ones(b)]).to(ctx.device)
        with ctx.autocast():
            x = torch.cat(decompose(images), 1)
            fake = generate(x, labels(i, 1 - real_label))
            (src_real, cls_real), (src_fake, _) = disc_ddp(x.detach()), disc_ddp(fake.detach())
        d_parts = {"d_adv": losses.adversarial_loss(src_real.float(), True)
                   + losses.adversarial_loss(src_fake.float(), False),
                   "d_cls": losses.domain_classification_loss(cls_real.float(), i, real_label)}
        d_loss = d_parts["d_adv"] + cfg.lambda_cls * d_parts["d_cls"]
        opt_d.zero_grad(set_to_none=True)
        scaler.scale(d_loss).backward()
        scaler.step(opt_d)

        with ctx.autocast():  # D itself, not its DDP wrapper: its gradients here are discarded, not all-reduced
            src_fake, cls_fake = disc(fake)
            cycled = generate(fake, labels(i, real_label))
            rec_lq, rec_hq = compose(x[:b]), compose(fake[:b])
        parts = {"adv": losses.adversarial_loss(src_fake.float(), True),
                 "cls": losses.domain_classification_loss(cls_fake.float(), i, 1 - real_label),
                 "cyc": losses.cycle_loss(cycled.float(), x.float()),
                 "rec_lq": losses.reconstruction_loss(rec_lq.float(), low),
                 "rec_hq": losses.reconstruction_loss(rec_hq.float(), high)}
        g_loss = parts["adv"] + cfg.lambda_cls * parts["cls"] + cfg.lambda_cyc * parts["cyc"] \
            + cfg.alpha * parts["rec_lq"] + cfg.beta * parts["rec_hq"]
        values = run.check({**{k: v.detach().item() for k, v in parts.items()},
                            **{k: v.detach().item() for k, v in d_parts.items()},
                            "generator": g_loss.detach().item(), "discriminator": d_loss.detach().item()})
        opt_g.zero_grad(set_to_none=True)
        scaler.scale(g_loss).backward()
        scaler.step(opt_g)
        scaler.update()
        run.advance(values)

        if ctx.main and (run.step % cfg.val_every == 0 or run.step == cfg.steps):
            metrics = evaluate_mdie(net, val)
            run.log_validation(_flat(metrics))
            if run.improved(_score(metrics)):
                run.save(weights_checkpoint("mdie", net, run.meta(metrics)), "best.pt")
        if run.step % cfg.save_every == 0 or run.step == cfg.steps:
            run.save_last(metrics)
    return run.close({"validation": metrics, "best": str(out / "best.pt"), "last": str(out / "last.pt")})


def _domain_sets(cfg: MDIETrainConfig) -> tuple[list, dict[str, list]]:
    """The three datasets' training pairs (one per domain, in DOMAINS order) and up to four validation pairs
    each, centre-cropped to --val-crop."""
    folders = {"color": cfg.color, "noise": cfg.noise, "texture": cfg.texture}
    train_sets = [domain_pairs(d, folders[d], "train", cfg.seed) for d in DOMAINS]
    val: dict[str, list] = {}
    for d in DOMAINS:
        pairs = domain_pairs(d, folders[d], "val", cfg.seed)
        got = [pairs.pair(k) for k in range(min(len(pairs), 4))]
        val[d] = [tuple(center_crop(x, cfg.val_crop) for x in g) for g in got if g is not None]
    return train_sets, val


@torch.no_grad()
def qat_validation(val: dict[str, list], teacher: torch.nn.Module, device: torch.device) -> dict[str, list]:
    """Per dataset, (low-quality photo, the float pipeline's output, high-quality photo) tensors on ``device``:
    what ``validate_qat`` scores, the teacher's outputs computed once."""
    out = {}
    for domain, pairs in val.items():
        tensors = [[torch.from_numpy(np.array(a, dtype=np.float32)).permute(2, 0, 1)[None].to(device) for a in pair]
                   for pair in pairs]
        out[domain] = [(x, teacher(x), y) for x, y in tensors]
    return out


@torch.no_grad()
def validate_qat(simulated: torch.nn.Module, val: dict[str, list]) -> dict[str, float]:
    """The int8 simulation on each dataset's low-quality validation photos (``qat_validation``): its fidelity (PSNR
    against the float pipeline, as the export's gate scores an int8 file) and its PSNR against the high-quality
    side; the mean and worst fidelity over all photos."""
    out, all_fidelity = {}, []
    for domain, triples in val.items():
        rows = []
        for x, want, y in triples:
            got = simulated(x)
            rows.append((psnr_ssim(got, want)[0], psnr_ssim(got, y)[0]))
        fidelity, psnr = np.mean(rows, axis=0)
        out |= {f"{domain}/fidelity": float(fidelity), f"{domain}/psnr": float(psnr)}
        all_fidelity += [r[0] for r in rows]
    return {"fidelity": float(np.mean(all_fidelity)), "fidelity_worst": float(np.min(all_fidelity)), **out}


def _train_qat(cfg: MDIETrainConfig, progress: bool, ctx: Context) -> dict:
    items = ctx.shard(cfg.batch)
    out = ctx.from_main(lambda: run_folder(cfg))
    keep_freed_memory()
    torch.manual_seed(cfg.seed)
    train_sets, photos = _domain_sets(cfg)
    teacher = network(cfg.init).requires_grad_(False).to(ctx.device)
    val = qat_validation(photos, teacher, ctx.device) if ctx.main else {}
    net, init = qat_network(cfg.init)
    net = ctx.prepare(net.train())
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    run = Run(out, cfg, "mdie", net, {"mdie": net, "opt": opt}, cfg.steps, progress, meta={"init": init}, ctx=ctx)
    student = ctx.wrap(net)

    metrics: dict | None = None
    if ctx.main and run.step == 0:   # where QAT starts: the int8 simulation of the --init weights
        metrics = validate_qat(net, val)
        run.log_validation(metrics)
        run.improved(metrics["fidelity"])
        run.save(weights_checkpoint("mdie", net, run.meta(metrics)), "best.pt")
    while run.step < cfg.steps:
        low, high = sample_batch(train_sets[run.step % len(DOMAINS)], cfg.patch,
                                 item_rngs((cfg.seed, run.step), items))
        images = torch.cat([low, high]).to(ctx.device, non_blocking=True)
        with torch.no_grad():
            target = teacher(images)
        loss = torch.nn.functional.mse_loss(student(images), target)
        values = run.check({"distillation": loss.detach().item()})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        run.advance(values)
        if ctx.main and (run.step % cfg.val_every == 0 or run.step == cfg.steps):
            metrics = validate_qat(net.recalibrated(), val)
            run.log_validation(metrics)
            if run.improved(metrics["fidelity"]):
                run.save(weights_checkpoint("mdie", net, run.meta(metrics)), "best.pt")
        if run.step % cfg.save_every == 0 or run.step == cfg.steps:
            run.save_last(metrics)
    return run.close({"validation": metrics, "best_fidelity": run.best, "best": str(out / "best.pt"),
                      "last": str(out / "last.pt")})
