"""What the DPED, intrinsic and MDIE trainings share: the run folder, atomic checkpoints with --resume, TensorBoard,
the progress bar and the divergence guard.

``last.pt`` holds the primary network as a loadable checkpoint plus ``train_state`` (every network and optimizer
named in ``states``, the step, the best score, the elapsed time). Batches are a function of (seed, step), so a
resumed run repeats the uninterrupted one.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from artifacts.io import write_atomic
from models import model_config

from .checkpoint import save_atomic
from .distributed import Context, check_device

PREVIOUS = "last.prev.pt"  # the checkpoint before last.pt, kept until the next one is complete


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf or exploded; the last good checkpoint is left as it was."""


POSITIVE_INTS = ("steps", "batch", "patch", "save_every", "val_every", "val_count", "val_crop", "threads", "width",
                 "generator_width", "blocks", "positives", "negatives", "crops", "cells",
                 "content_pool")
NON_NEGATIVE_INTS = ("pretrain_steps", "seed", "workers")
ARCHITECTURE = ("model", "width", "head", "out_layer", "generator_width", "blocks", "qat")  # as the run resumed


def check_options(cfg: Any, min_patch: int = 1) -> None:
    """Options checked before any work: counts that must be positive, rates that must be > 0. Raises ValueError
    naming the option (as it is spelled on the command line)."""
    for f in fields(cfg):
        value, flag = getattr(cfg, f.name), f"--{f.name.replace('_', '-')}"
        if value is None or isinstance(value, bool):
            continue
        if f.name in POSITIVE_INTS and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{flag} must be a positive integer, got {value}")
        if f.name in NON_NEGATIVE_INTS and (not isinstance(value, int) or value < 0):
            raise ValueError(f"{flag} must be 0 or more, got {value}")
        if f.name.startswith("lr") and not value > 0:
            raise ValueError(f"{flag} must be > 0, got {value}")
    if hasattr(cfg, "device"):
        check_device(cfg.device)
    if getattr(cfg, "patch", min_patch) < min_patch:
        raise ValueError(f"--patch must be at least {min_patch} pixels, got {cfg.patch}")


def weights_checkpoint(name: str, model: torch.nn.Module, meta: dict, fp16: bool = False) -> dict:
    """A weights-only checkpoint ``create_model(name, checkpoint=...)`` loads; ``fp16`` stores float tensors
    as float16 (half the file; loading copies them back into the float32 model). A training stand-in for the
    network (``train.qat.QATGenerator``) gives the network itself by its ``float_network()``."""
    if hasattr(model, "float_network"):
        model = model.float_network()
    state = model.state_dict()
    if fp16:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    return {"model": name, "config": model_config(model), "state_dict": state,
            "meta": {**meta, "stored_as": "float16" if fp16 else "float32", "torch": str(torch.__version__),
                     "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}}


def network(spec: str) -> torch.nn.Module:
    """The network ``spec`` names, in eval mode: a registered model (its shipped weights) or a checkpoint of one."""
    from models import create_model, list_models
    from models.registry import load_checkpoint

    if spec in list_models():
        return create_model(spec, pretrained=True)
    return create_model(load_checkpoint(spec)["model"], checkpoint=spec)


def check_network_spec(flag: str, spec: str) -> None:
    """A ``network`` spec given on the command line must name a model or an existing file (ValueError)."""
    from models import list_models

    if spec not in list_models() and not Path(spec).is_file():
        raise ValueError(f"{flag} {spec}: neither a model ({', '.join(list_models())}) nor a checkpoint file")


def run_folder(cfg: Any) -> Path:
    """The run folder of a training config (fields ``model``, ``out``, ``resume``): ``--out``, checked against
    --resume, or ``runs/<model>`` numbered when taken."""
    if cfg.out:
        out = Path(cfg.out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} is a file, not a run folder")
        held = (out / "last.pt").exists() or (out / PREVIOUS).exists()
        if held and not cfg.resume:
            raise FileExistsError(f"{out} already holds a run: pass --resume to continue it, or another --out")
        if cfg.resume and not held:
            raise FileNotFoundError(f"Nothing to resume: {out / 'last.pt'} does not exist")
        if cfg.resume:
            _check_same_run(out, cfg)
        return out
    if cfg.resume:
        raise ValueError("--resume needs --out: the run folder to continue")
    base, n = Path("runs") / cfg.model, 1
    out = base
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}{n}")
    return out


def _check_same_run(out: Path, cfg: Any) -> None:
    """A resume must rebuild the same networks: options that change them must match the run's config.json."""
    try:
        saved = json.loads((out / "config.json").read_text())
    except (OSError, ValueError):
        return  # no readable config: the checkpoint's own shapes are checked when it loads
    for key in ARCHITECTURE:
        mine = getattr(cfg, key, None)
        if mine is not None and key in saved and saved[key] != mine:
            flag = f"--{key.replace('_', '-')}"
            if isinstance(mine, bool):   # a switch: the run had it or not
                raise ValueError(f"the run in {out} was started {'without' if mine else 'with'} {flag}: resume "
                                 f"{'without' if mine else 'with'} it, or use another --out")
            raise ValueError(f"{flag} {mine} conflicts with the run in {out}, which was started with {flag} "
                             f"{saved[key]} (its config.json): resume with {flag} {saved[key]}, or use another --out")


def load_last(out: Path) -> dict:
    """The newest readable ``last.pt`` of a run, falling back to the one before it (``last.prev.pt``) when the
    newest cannot be read; raises CheckpointError naming the files when neither can."""
    from models import CheckpointError

    errors = []
    for name in ("last.pt", PREVIOUS):
        path = out / name
        if not path.exists():
            continue
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(ckpt, dict) or "train_state" not in ckpt:
                raise ValueError("no train_state in it")
        except Exception as err:  # truncated, zero bytes, not a checkpoint
            errors.append(f"{path} ({' '.join(str(err).split())[:120] or type(err).__name__})")
            continue
        if errors:
            print(f"warning: {errors[0]} cannot be read; resuming from {path} (step "
                  f"{ckpt['train_state'].get('step')})", file=sys.stderr)
        return ckpt
    raise CheckpointError(f"cannot resume: no readable checkpoint in {out}: {'; '.join(errors) or 'none found'}")


class Run:
    """One training run in ``out``: resume, log, checkpoint. Every process of a distributed run has one; only
    rank 0 (``ctx.main``) writes anything."""

    def __init__(self, out: Path, cfg: Any, name: str, model: torch.nn.Module, states: dict[str, Any],
                 steps: int, progress: bool, meta: dict | None = None, ctx: Context | None = None):
        self.out, self.cfg, self.name, self.model, self.states = out, cfg, name, model, states
        self.ctx = ctx or Context(torch.device("cpu"))
        # recorded in every checkpoint's meta (e.g. which content loss was used, where the run ran)
        self.extra_meta = {**(meta or {}), **self.ctx.record()}
        self.step, self.best, self.best_step, self.elapsed = 0, -math.inf, 0, 0.0
        if getattr(cfg, "resume", False):
            ts = load_last(out)["train_state"]
            for key, obj in states.items():
                obj.load_state_dict(ts[key])
            self.step, self.best, self.elapsed = ts["step"], ts["best"], ts["elapsed_s"]
            self.best_step = ts.get("best_step", 0)
        self.tb = None
        if self.ctx.main:
            out.mkdir(parents=True, exist_ok=True)
            for stale in out.glob(".*.tmp"):  # a checkpoint write cut short by a kill
                stale.unlink(missing_ok=True)
            write_atomic(out / "config.json", json.dumps({**asdict(cfg), "run": self.ctx.record()}, indent=2).encode())
            from torch.utils.tensorboard import SummaryWriter  # heavy import, only when training
            self.tb = SummaryWriter(str(out / "tb"))
        self.bar = tqdm(total=steps, initial=self.step, desc=f"train {name}", disable=not (progress and self.ctx.main),
                        dynamic_ncols=True)
        self._t0 = time.perf_counter() - self.elapsed
        self._start_step, self._start_time = self.step, time.perf_counter()
        self._last_step_time = self._start_time

    def meta(self, metrics: dict | None) -> dict:
        return {"step": self.step, **self.extra_meta, "train_config": asdict(self.cfg), "validation": metrics or {},
                "elapsed_s": round(self.elapsed, 1)}

    def improved(self, score: float, since: int = 0) -> bool:
        """Whether ``score`` is the best validation so far among those after step ``since`` (records it if so)."""
        if score > self.best or self.best_step <= since:
            self.best, self.best_step = score, self.step
            return True
        return False

    def check(self, losses: dict[str, float]) -> dict[str, float]:
        """The step's logged values averaged over the processes (one all-reduce); stops (TrainingDiverged) when one
        is NaN/inf or exploded, on every process at the same step. Pass the result to ``advance``."""
        losses = self.ctx.mean(losses)
        bad = {k: v for k, v in losses.items() if not math.isfinite(v) or abs(v) > 1e8}
        if bad:
            self.bar.close()
            raise TrainingDiverged(
                f"training diverged at step {self.step + 1}: {', '.join(f'{k} {v:.4g}' for k, v in bad.items())}. "
                f"Last good checkpoint kept: {self.out / 'last.pt'}. Try a lower --lr or check the data.")
        return losses

    def advance(self, losses: dict[str, float]) -> None:
        """One step done: ``losses`` (as ``check`` returned them) go to TensorBoard and the progress bar."""
        self.step += 1
        self._last_step_time = time.perf_counter()
        self.elapsed = self._last_step_time - self._t0
        if self.tb is not None and self.step % 10 == 0:
            for k, v in losses.items():
                self.tb.add_scalar(f"loss/{k}", v, self.step)
        self.bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()}, refresh=False)
        self.bar.update(1)

    def log_validation(self, metrics: dict[str, float]) -> None:
        if self.tb is not None:
            for k, v in metrics.items():
                self.tb.add_scalar(f"val/{k}", v, self.step)

    def log_images(self, tag: str, images: torch.Tensor) -> None:
        if self.tb is not None:
            self.tb.add_images(tag, images.float().cpu(), self.step)

    def save(self, ckpt: dict, name: str) -> None:
        """A weights checkpoint (e.g. best.pt) written atomically into the run folder, by rank 0 only."""
        if self.ctx.main:
            save_atomic(ckpt, self.out / name)

    def save_last(self, metrics: dict | None) -> None:
        if not self.ctx.main:
            return
        ckpt = weights_checkpoint(self.name, self.model, self.meta(metrics))
        ckpt["train_state"] = {**{k: obj.state_dict() for k, obj in self.states.items()},
                               "step": self.step, "best": self.best, "best_step": self.best_step,
                               "elapsed_s": self.elapsed}
        save_atomic(ckpt, self.out / "last.pt", keep_previous=self.out / PREVIOUS)

    def throughput(self) -> dict[str, float]:
        """Steps and batch items (``--batch``, over all processes) per second in this process's part of the run,
        up to the end of its last step (the final validation and checkpoint not counted)."""
        steps, wall = self.step - self._start_step, self._last_step_time - self._start_time
        per_s = steps / wall if wall > 0 else 0.0
        return {"steps_per_s": round(per_s, 4), "items_per_s": round(per_s * getattr(self.cfg, "batch", 1), 3)}

    def close(self, summary: dict) -> dict:
        self.bar.close()
        summary = {"run": str(self.out), "model": self.name, "steps": self.step, "wall_s": round(self.elapsed, 1),
                   **self.throughput(), **self.ctx.record(), **summary}
        if self.tb is not None:
            self.tb.close()
            write_atomic(self.out / "summary.json", json.dumps(summary, indent=2, default=str).encode())
        return summary
