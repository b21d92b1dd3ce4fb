"""The benchmark: every model x target x precision x runtime x threads, speed and quality side by side."""
from __future__ import annotations

import math
import os
import platform
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from artifacts.sidecar import sidecar_for
from artifacts import TARGETS, SidecarError, runtime
from artifacts.fidelity import psnr
from artifacts.sidecar import Calibration, Sidecar
from artifacts.targets import artifact_size
from photos.baselines import BASELINES
from export.api import FREE_RECIPES, export_one, size_multiple as artifact_multiple, weights_digest
from export.common import ExportError, ExportSpec, MissingBackend
from models import (CheckpointError, DeploymentContract, conv_macs_per_pixel, count_parameters, create_model,
                    fold_batchnorm)
from train.data import open_pairs
from train.metrics import psnr_ssim

from .measure import Job, measure_in_child
from .profile import conv_shapes
from .roofline import Roofline

PIRM_WEIGHTS = (4.0, 100.0, 2.0)  # PIRM 2018 DPED track: a(PSNR-21) + b(SSIM-0.9) + c*min(T_base/T, 4)


def runnable_targets() -> list[str]:
    """The targets whose runtime runs on this machine (LiteRT and ONNX Runtime here; Core ML on macOS, TensorRT
    with CUDA)."""
    return [name for name, t in TARGETS.items() if runtime(t.runtime).unavailable() is None]


@dataclass
class BenchConfig:
    """The defaults answer the speed question in a few minutes: DPED+ against DPED, fp32 and int8, at the HD size
    DPED and the PIRM challenge used, on every runtime this machine has, on all its cores."""
    models: list[str] = field(default_factory=lambda: ["dped_mobile", "dped"])
    targets: list[str] = field(default_factory=runnable_targets)
    precisions: list[str] = field(default_factory=lambda: ["fp32", "int8"])  # or ["all"]
    size: tuple[int, int] = (720, 1280)      # latency input (H, W)
    threads: list[int] = field(default_factory=lambda: [min(2, os.cpu_count() or 1)])
    runs: int = 3
    warmup: int = 1
    data: str | None = None                  # paired folder or DPED layout; None: built-in validation photos
    phone: str | None = None
    eval_count: int = 8
    full_res: tuple[int, int] | None = (3000, 4000)   # 12 MP tiled run of dped_mobile fp32 (LiteRT); None: skip
    roofline: bool = True                    # GMAC/s, % of this machine's peak and % of the roofline floor per row
    recipes: list[str] = field(default_factory=list)  # extra int8 recipes, each a row: "minmax", "cle+bias-correction"
    export_dir: Path = Path("exported")
    out: Path = Path("benchmark_results")


def eval_pairs(cfg: BenchConfig, contract: DeploymentContract | None = None
               ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(inputs, ground truth) a model is scored on.

    Enhancers: the validation pairs (phone side in, DSLR side as truth), cropped to the contract's size multiple.
    The intrinsic decomposer: held-out synthetic images, with albedo and shading (6 channels) as truth.
    """
    multiple = contract.size_multiple if contract else 1
    if contract is not None and contract.output_names != ("enhanced",):
        from train.intrinsic_data import validation_triples

        triples = validation_triples(cfg.eval_count)
        return [t[0] for t in triples], [np.concatenate([t[1], t[2]], axis=2) for t in triples]
    pairs = open_pairs(cfg.data, cfg.phone, "val")
    phones, dslrs = [], []
    for i in range(len(pairs)):
        got = pairs.pair(i)
        if got is not None:
            h, w = (got[0].shape[0] // multiple) * multiple, (got[0].shape[1] // multiple) * multiple
            if h and w:
                phones.append(np.ascontiguousarray(got[0][:h, :w], dtype=np.float32))
                dslrs.append(np.ascontiguousarray(got[1][:h, :w], dtype=np.float32))
        if len(phones) >= cfg.eval_count:
            break
    if not phones:
        raise ValueError("No readable evaluation pairs")
    return phones, dslrs


def _to_t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(x, dtype=np.float32)).permute(2, 0, 1)[None]


def quality(outputs: list[np.ndarray], dslrs: list[np.ndarray], ref: list[np.ndarray] | None) -> dict:
    scores = np.array([psnr_ssim(_to_t(o), _to_t(d)) for o, d in zip(outputs, dslrs)])
    q = {"psnr_db": round(float(scores[:, 0].mean()), 3), "ssim": round(float(scores[:, 1].mean()), 4)}
    if ref is not None:
        q["fidelity_psnr_db"] = round(min(min(psnr(o, r), 999.0) for o, r in zip(outputs, ref)), 2)
    return q


def _artifact(model: str, target: str, precision: str, cfg: BenchConfig, checkpoint: Path | None = None,
              out: Path | None = None, recipe: Recipe | None = None) -> tuple[Path | None, str]:
    t = TARGETS[target]
    out = out or cfg.export_dir
    spec = ExportSpec(model=model, target=target, precision=precision, out=out,
                      checkpoint=str(checkpoint) if checkpoint else None,
                      calibration_method=recipe.method if recipe else None,
                      weight_methods=recipe.weight_methods if recipe else (),
                      fidelity_target=recipe.fidelity_target if recipe else None)
    path, sidecar = out / f"{model}_{precision}{t.suffix}", out / t.sidecar_name(spec.stem)
    if path.exists() and sidecar.exists():  # reuse only an artifact of the shipped weights it would export now
        try:
            found = Sidecar.read(sidecar)
        except SidecarError:  # an older or foreign sidecar: export afresh
            found = None
        searched = spec.fidelity_target is not None
        if found and found.status == "ok" and found.weights_sha256 == weights_digest(spec) and found.resizable \
                and any(made_with(found.calibration, spec.method, methods, t.precision(precision).weight_qmax,
                                  float_layers=searched, relu_min_db=floor) for methods, floor in recipes_made(spec)) \
                and (not searched or found.fidelity.gate_db == spec.fidelity_target):
            return path, "ok"
    try:
        result = export_one(spec)
    except MissingBackend as err:
        return None, f"skipped: {str(err).split('. On this')[0]}"
    except (ExportError, CheckpointError, ValueError) as err:
        return None, f"export failed: {err}"
    return (path, "ok") if result.ok else (None, "export failed its fidelity gate")


def recipes_made(spec: ExportSpec) -> list[tuple[tuple[str, ...], float]]:
    """(weight-side methods, LeakyReLU floor) that an export of ``spec`` may record: those it asks for at its
    floor, or, from a fidelity search asked for no weight-side method, one of ``export.api.FREE_RECIPES`` at the
    default export's floor (the search takes them all in int8 before it floats layers)."""
    made = [(spec.weight_methods, relu_floor(spec))]
    if spec.fidelity_target is not None and not spec.weight_methods:
        made += [(methods, relu_floor(replace(spec, fidelity_target=None))) for methods in FREE_RECIPES]
    return made


def default_recipe(calibration: Calibration | None, method: str | None, weight_qmax: int | None = None) -> bool:
    """The precision's default quantization recipe: the default calibration method, nothing kept in float, no QAT
    and no weight-side method (an artifact made otherwise is not what the benchmark's row claims to measure)."""
    return made_with(calibration, method, (), weight_qmax)


def made_with(calibration: Calibration | None, method: str | None, weight_methods: tuple[str, ...],
              weight_qmax: int | None = None, float_layers: bool = False, relu_min_db: float | None = None) -> bool:
    """Whether an artifact was quantized with exactly this calibration method and these weight-side methods,
    nothing kept in float unless ``float_layers`` (QAT steps only for the 'qat' method), and, given
    ``weight_qmax``, on the weight range the target uses now (an int8 ONNX from before its 7-bit weights records 0
    or 127), and given ``relu_min_db``, with LeakyReLUs chosen as ReLUs at that floor (0: none considered)."""
    if calibration is None:
        return True
    return (calibration.method in ("", method or "") and (float_layers or not calibration.float_layers)
            and bool(calibration.qat_steps) == (method == "qat")
            and list(calibration.weight_methods) == list(weight_methods)
            and weight_qmax in (None, calibration.weight_qmax)
            and relu_min_db in (None, calibration.relu_min_db))


def relu_floor(spec: ExportSpec) -> float:
    """The ``relu_min_db`` an export of ``spec`` records (quantize.activations)."""
    from quantize.activations import min_db

    return min_db(spec.fidelity_target) if spec.calibrated and spec.relu else 0.0


@dataclass(frozen=True)
class Recipe:
    """An int8 recipe the benchmark adds as its own row: a calibration method (None: the precision's default),
    weight-side methods (quantize.weights) and a fidelity target (``fidelity-45``: the export's --fidelity-target,
    layers kept in float to reach it), written ``minmax``, ``cle+bias-correction``, ``minmax+adaround``,
    ``fidelity-45``."""
    text: str
    method: str | None
    weight_methods: tuple[str, ...]
    fidelity_target: float | None = None

    @classmethod
    def parse(cls, text: str) -> "Recipe":
        from quantize.weights import METHODS as WEIGHT_METHODS

        calibration = {m for t in TARGETS.values() for p in t.precisions.values() for m in p.methods}
        parts = [x.strip() for x in text.split("+") if x.strip()]
        methods = [x for x in parts if x in calibration]
        goals = [x for x in parts if x.startswith(FIDELITY)]
        targets = [float(x[len(FIDELITY):]) for x in goals if re.fullmatch(r"\d+(\.\d+)?", x[len(FIDELITY):])]
        unknown = [x for x in parts if x not in calibration and x not in WEIGHT_METHODS and x not in goals]
        if not parts or unknown or len(methods) > 1 or len(goals) > 1 or len(targets) != len(goals):
            raise ValueError(f"recipe {text!r}: one calibration method at most ({', '.join(sorted(calibration))}), "
                             f"weight methods ({', '.join(WEIGHT_METHODS)}) and one {FIDELITY}DB, joined by '+'")
        return cls(text, methods[0] if methods else None, tuple(m for m in WEIGHT_METHODS if m in parts),
                   targets[0] if targets else None)

    def name(self, target: str, precision: str) -> str:
        """The recipe in full for one target: its calibration method first (``percentile+cle+fidelity-45``)."""
        method = self.method or TARGETS[target].precision(precision).default_method or ""
        goal = f"{FIDELITY}{self.fidelity_target:g}" if self.fidelity_target is not None else ""
        return "+".join(x for x in (method, *self.weight_methods, goal) if x)

    def unfit(self, target: str, precision: str) -> str | None:
        """Why this target's precision cannot be made with it, or None."""
        p = TARGETS[target].precision(precision)
        if self.method and self.method not in p.methods:
            return f"{target} {precision} has no calibration method {self.method} ({', '.join(p.methods) or 'none'})"
        if self.fidelity_target is not None and not p.searched:
            return f"{target} {precision} cannot choose float layers for a fidelity target"
        return None


FIDELITY = "fidelity-"  # a recipe part: the export's --fidelity-target
DEFAULT_RECIPE = Recipe("default", None, ())   # the precision's default calibration method, no weight-side method

NO_BRANCH = "{model}/no-branch"  # the row of an image-adaptive model's local network alone: what the branch costs
PAIRED_RUNS = 7  # at least this many paired runs for the branch's cost: a few percent of the latency, near the noise


def without_branch(model: str, out: Path) -> Path:
    """A checkpoint of ``model``'s shipped weights without its global branch (the same local network) in
    ``out``, rewritten only when those weights change (so that its exported files are reused): the speed
    reference the branch's cost is measured against."""
    import io

    from artifacts.io import write_atomic
    from models import model_config
    from train.loop import weights_checkpoint

    net = create_model(model, pretrained=True)
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("globe.")}
    path = out / f"{model}.pt"
    if path.exists():
        try:
            kept = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
            if kept.keys() == state.keys() and all(torch.equal(kept[k], v) for k, v in state.items()):
                return path
        except Exception:  # unreadable or foreign: write it afresh
            pass
    local = create_model(model, **{**model_config(net), "global_branch": False})
    local.load_state_dict(state)
    buf = io.BytesIO()
    torch.save(weights_checkpoint(model, local, {"from": f"models/weights/{model}.pt, global branch removed"}), buf)
    out.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, buf.getvalue())


def run_benchmark(cfg: BenchConfig, log=print) -> list[dict]:
    h, w = cfg.size
    rows: list[dict] = []
    phones: list[np.ndarray] = []
    dslrs: list[np.ndarray] = []
    limits = Roofline(cfg.size, log) if cfg.roofline else None
    convs: dict[str, dict] = {}   # the model's convolutions at the benchmark size (MACs, activation bytes)

    def base(model: str, target: str, precision: str, rt: str, threads: int | None) -> dict:
        calibrated = target in TARGETS and TARGETS[target].precision(precision).calibration
        return {"model": model, "target": target, "precision": precision,
                "recipe": DEFAULT_RECIPE.name(target, precision) if calibrated else None,
                "runtime": rt, "threads": threads,
                "input_hw": f"{h}x{w}", "size_bytes": None, "size_mb": None, "latency_ms_median": None,
                "latency_ms_p90": None, "megapixels_per_s": None, "peak_rss_mb": None, "psnr_db": None,
                "ssim": None, "psnr_drop_db": None, "fidelity_psnr_db": None, "status": "ok"}

    def timed(row: dict, job: Job, ref_q: dict | None, ref_out: list | None) -> dict | None:
        """Measure ``job`` into ``row``; returns the child's result (its eval outputs under "outputs")."""
        log(f"  {row['model']} {row['target']} {row['precision']} {row['runtime']} x{row['threads']} ...")
        res = measure_in_child(job)
        if "error" in res:
            row["status"] = f"failed: {res['error']}"
            return None
        row.update({k: res[k] for k in ("latency_ms_median", "latency_ms_p90", "peak_rss_mb")})
        row["latency_ms_median"], row["latency_ms_p90"] = (round(row["latency_ms_median"], 1),
                                                           round(row["latency_ms_p90"], 1))
        row["megapixels_per_s"] = round(h * w / 1e6 / (res["latency_ms_median"] / 1000), 3)
        row.update(quality(res["outputs"], dslrs, ref_out))
        if ref_q:
            row["psnr_drop_db"] = round(ref_q["psnr_db"] - row["psnr_db"], 3)
        if limits is not None and row["model"] in cfg.models:
            limits.fill(row, convs)
        return res

    for model in cfg.models:
        net = create_model(model, pretrained=True)
        # every row scores the same photos: cropped to what each target's files take (a rewrite may need more)
        multiple = math.lcm(net.contract.size_multiple, *(artifact_multiple(net, t) for t in cfg.targets
                                                           if t in TARGETS))
        phones[:], dslrs[:] = eval_pairs(cfg, replace(net.contract, size_multiple=multiple))
        task = "enhance" if net.contract.output_names == ("enhanced",) else "decompose"
        if task == "enhance":
            input_q = quality(phones, dslrs, None)
            log(f"{model}: {len(phones)} evaluation pairs; input PSNR {input_q['psnr_db']:.2f} dB, "
                f"SSIM {input_q['ssim']:.3f}")
            if not any(r["target"] == "classical" for r in rows):  # what a user would try first, same photos
                rows.extend(baseline_rows(phones, dslrs, base))
        else:
            log(f"{model}: {len(phones)} held-out synthetic images; PSNR/SSIM of albedo + shading vs ground truth")
        info = {"task": task, "macs_per_pixel": conv_macs_per_pixel(net), "parameters": count_parameters(net)}
        convs = conv_shapes(net.eval(), cfg.size) if limits is not None else {}
        ref_out, ref_q = None, None
        for threads in cfg.threads:
            row = {**base(model, "pytorch", "fp32", "pytorch", threads), **info}
            res = timed(row, Job(model, "pytorch", "fp32", "pytorch", threads, model, cfg.size, cfg.runs,
                                 cfg.warmup, phones), None, ref_out)
            if ref_out is None and res is not None:
                ref_out, ref_q = res["outputs"], {"psnr_db": row["psnr_db"]}
                row["psnr_drop_db"], row["fidelity_psnr_db"] = 0.0, None
            else:
                row["psnr_drop_db"] = round(ref_q["psnr_db"] - row["psnr_db"], 3) if ref_q and row["psnr_db"] else None
            rows.append(row)
        for target in cfg.targets:
            t = TARGETS[target]
            rt = runtime(t.runtime)
            precisions = t.precisions if cfg.precisions == ["all"] else [p for p in cfg.precisions
                                                                         if p in t.precisions]
            for precision in precisions:
                reason = rt.unavailable()
                path, status = _artifact(model, target, precision, cfg)
                size = artifact_size(path) if path else None
                if path is None or reason:
                    row = {**base(model, target, precision, rt.NAME, None), **info,
                           "status": status if path is None else f"skipped: {reason}",
                           "size_bytes": size, "size_mb": round(size / 1e6, 3) if size else None}
                    if path is not None and target == "coreml":  # the export's emulated numerics
                        row.update(_coreml_emulated(net, precision, phones, dslrs, ref_out, ref_q))
                    rows.append(row)
                    continue
                for threads in cfg.threads:
                    row = {**base(model, target, precision, rt.NAME, threads), **info,
                           "size_bytes": size, "size_mb": round(size / 1e6, 3)}
                    timed(row, Job(model, target, precision, rt.NAME, threads, str(path), cfg.size, cfg.runs,
                                   cfg.warmup, phones), ref_q, ref_out)
                    rows.append(row)
                if t.precision(precision).calibration:
                    rows.extend(_recipe_rows(model, target, precision, cfg, info, base, timed, phones, ref_q,
                                             ref_out, rows[-1]))
                if net.contract.thumbnail and target == "tflite":  # what the global branch costs on LiteRT
                    rows.extend(_branch_cost_rows(model, precision, cfg, base, timed, phones, ref_q, ref_out,
                                                  path))
    if cfg.full_res:
        rows.append(_full_res_row(cfg, base, log))
    _pirm(rows)
    return rows


def _recipe_rows(model: str, target: str, precision: str, cfg: BenchConfig, info: dict, base, timed, phones,
                 ref_q, ref_out, default_row: dict) -> list[dict]:
    """One row per ``cfg.recipes`` entry for a calibrated precision, exported to ``<export-dir>/recipes/<name>``
    (the default recipe's row is the one before, named by its method); ``fidelity_vs_default_db``: its fidelity
    against that row's."""
    rt = runtime(TARGETS[target].runtime)
    rows, seen = [], {default_row["recipe"]}
    for recipe in map(Recipe.parse, cfg.recipes):
        name = recipe.name(target, precision)
        if name in seen:
            continue
        seen.add(name)
        for threads in cfg.threads:
            row = {**base(model, target, precision, rt.NAME, threads), **info, "recipe": name, "extra_recipe": True,
                   "fidelity_vs_default_db": None}
            reason = recipe.unfit(target, precision)
            path, status = (None, f"skipped: {reason}") if reason else _artifact(
                model, target, precision, cfg, out=cfg.export_dir / "recipes" / name, recipe=recipe)
            if path is None:
                rows.append({**row, "status": status})
                break
            size = artifact_size(path)
            row.update(size_bytes=size, size_mb=round(size / 1e6, 3))
            if recipe.fidelity_target is not None:  # what the search kept in float, and the weight-side methods
                chosen = Sidecar.read(TARGETS[target].sidecar_path(path)).calibration
                row.update(float_layers=chosen.float_layers, weight_methods=chosen.weight_methods)
            timed(row, Job(model, target, precision, rt.NAME, threads, str(path), cfg.size, cfg.runs, cfg.warmup,
                           phones), ref_q, ref_out)
            if row["fidelity_psnr_db"] is not None and default_row.get("fidelity_psnr_db") is not None:
                row["fidelity_vs_default_db"] = round(row["fidelity_psnr_db"] - default_row["fidelity_psnr_db"], 2)
            rows.append(row)
    return rows


def _branch_cost_rows(model: str, precision: str, cfg: BenchConfig, base, timed, phones, ref_q, ref_out,
                      whole: Path) -> list[dict]:
    """The same weights without the global branch, on LiteRT: the latency the branch adds, timed in pairs with the
    whole model's file ``whole`` (``branch_cost_pct``: the median of the per-run differences over this row's median;
    ``branch_cost_spread_pct``: half their interquartile range, the noise the figure carries). Its
    quality is the local network's without its global input, not a model anyone ships."""
    folder = cfg.export_dir / "no-branch"
    ckpt = without_branch(model, folder)
    path, status = _artifact(model, "tflite", precision, cfg, checkpoint=ckpt, out=folder)
    name = NO_BRANCH.format(model=model)
    if path is None:
        return [{**base(name, "tflite", precision, "litert", None), "status": status}]
    local = create_model(model, checkpoint=ckpt)
    size = artifact_size(path)
    info = {"task": "enhance", "macs_per_pixel": conv_macs_per_pixel(local), "parameters": count_parameters(local),
            "size_bytes": size, "size_mb": round(size / 1e6, 3)}
    rows = []
    for threads in cfg.threads:
        row = {**base(name, "tflite", precision, "litert", threads), **info, "branch_cost_pct": None,
               "branch_cost_spread_pct": None}
        res = timed(row, Job(model, "tflite", precision, "litert", threads, str(path), cfg.size,
                             max(cfg.runs, PAIRED_RUNS), cfg.warmup, phones, paired=str(whole)),
                    ref_q, ref_out)
        if res and res.get("paired_extra_ms_median") is not None and row["latency_ms_median"]:
            row["branch_cost_pct"] = round(100 * res["paired_extra_ms_median"] / row["latency_ms_median"], 1)
            row["branch_cost_spread_pct"] = round(50 * res["paired_extra_ms_iqr"] / row["latency_ms_median"], 1)
        row["fidelity_psnr_db"] = None  # another network than the reference: no fidelity to speak of
        rows.append(row)
    return rows


def baseline_rows(phones: list[np.ndarray], dslrs: list[np.ndarray], base) -> list[dict]:
    """The classical corrections (photos.baselines) on the evaluation pairs: PSNR/SSIM and their time per photo
    (NumPy / scikit-image in this process, one thread)."""
    rows = []
    for name, correct in BASELINES.items():
        times, outputs = [], []
        for phone in phones:
            t0 = time.perf_counter()
            outputs.append(correct(phone))
            times.append((time.perf_counter() - t0) * 1000)
        h, w = phones[0].shape[:2]
        row = {**base(name, "classical", "-", "numpy", 1), "input_hw": f"{h}x{w}", "task": "enhance",
               "latency_ms_median": round(float(np.median(times)), 1),
               "latency_ms_p90": round(float(np.percentile(times, 90)), 1),
               "megapixels_per_s": round(h * w / 1e6 / (float(np.median(times)) / 1000), 3)}
        row.update(quality(outputs, dslrs, None))
        rows.append(row)
    return rows


def _full_res_row(cfg: BenchConfig, base, log) -> dict:
    """Time and peak memory of python -m enhance's tiled path on a full-resolution photo (LiteRT fp32)."""
    h, w = cfg.full_res
    path, status = _artifact("dped_mobile", "tflite", "fp32", cfg)
    row = {**base("dped_mobile", "tflite", "fp32", "litert-tiled", max(cfg.threads)), "input_hw": f"{h}x{w}",
           "status": status}
    if path is None:
        return row
    log(f"  dped_mobile tflite fp32 tiled {h}x{w} ...")
    sidecar = sidecar_for(path)
    res = measure_in_child(Job("dped_mobile", "tflite", "fp32", "litert", max(cfg.threads), str(path), (h, w), 1, 0,
                               [], full_res=(h, w), tile=sidecar.tile, halo=sidecar.halo,
                               thumbnail=sidecar.thumbnail.hw[0] if sidecar.thumbnail else 0))
    if "error" in res:
        row["status"] = f"failed: {res['error']}"
        return row
    size = artifact_size(path)
    row.update(latency_ms_median=round(res["latency_ms_median"], 1), latency_ms_p90=round(res["latency_ms_p90"], 1),
               peak_rss_mb=res["peak_rss_mb"], size_bytes=size, size_mb=round(size / 1e6, 3),
               megapixels_per_s=round(h * w / 1e6 / (res["latency_ms_median"] / 1000), 3))
    return row


def _coreml_emulated(net, precision, phones, dslrs, ref_out, ref_q) -> dict:
    from export.coreml import emulate

    folded = fold_batchnorm(net)
    outs = [emulate(folded, precision, p) for p in phones]
    q = quality(outs, dslrs, ref_out)
    if ref_q:
        q["psnr_drop_db"] = round(ref_q["psnr_db"] - q["psnr_db"], 3)
    q["quality_mode"] = "emulated"
    return q


def _pirm(rows: list[dict]) -> None:
    """PIRM-2018 score per timed row, T_base = PyTorch fp32 DPED at the same thread count (else the model's)."""
    a, b, c = PIRM_WEIGHTS
    base_t = {(r["model"], r["threads"]): r["latency_ms_median"] for r in rows if r["runtime"] == "pytorch"}
    for r in rows:
        t = r.get("latency_ms_median")
        tb = base_t.get(("dped", r["threads"])) or base_t.get((r["model"], r["threads"]))
        if t and tb and r.get("psnr_db") is not None and r.get("task", "enhance") == "enhance":
            r["pirm_score"] = round(a * (r["psnr_db"] - 21) + b * (r["ssim"] - 0.9) + c * min(tb / t, 4), 2)
        else:
            r["pirm_score"] = None


def host() -> str:
    return f"{platform.machine()}, {torch.get_num_threads()} threads available, {platform.platform()}"


def phone_rows(rows: list[dict], cfg: BenchConfig, serial: str, binary: str, delegates: list[str], log=print) -> list[dict]:
    """Rows for every host-timed .tflite artifact run on the phone; quality is the host's for the same file."""
    from .adb import AdbError, run_on_phone

    out = []
    host_rows = {(r["model"], r["precision"]): r for r in rows if r["runtime"] == "litert" and r["psnr_db"]}
    for (model, precision), host_row in host_rows.items():
        artifact = cfg.export_dir / f"{model}_{precision}.tflite"
        for delegate in delegates:
            for threads in (cfg.threads if delegate == "cpu" else [1]):
                log(f"  {model} tflite {precision} phone/{delegate} x{threads} ...")
                row = {**host_row, "runtime": f"litert-android-{delegate}", "threads": threads,
                       "latency_ms_median": None, "latency_ms_p90": None, "peak_rss_mb": None,
                       "megapixels_per_s": None, "status": "ok", "device": serial}
                try:
                    res = run_on_phone(serial, binary, artifact, delegate, threads, cfg.runs, cfg.size)
                except AdbError as err:
                    row["status"] = f"failed: {err}"
                else:
                    row["latency_ms_median"] = round(res.median_ms or res.avg_ms, 2)
                    row["latency_ms_p90"] = round(res.p90_ms, 2) if res.p90_ms else None
                    row["peak_rss_mb"] = res.peak_memory_mb
                    row["megapixels_per_s"] = round(cfg.size[0] * cfg.size[1] / 1e3 / row["latency_ms_median"], 3)
                out.append(row)
    _pirm(out)
    return out


def run_profiles(cfg: BenchConfig, log=print) -> list[Path]:
    """Per-layer profiles of each model: ONNX Runtime (its profiler, on each requested ONNX precision's artifact)
    and LiteRT (each conv alone, fp32), at ``cfg.size`` and the largest thread count."""
    from .profile import litert_profile, memory_bandwidth_gb_s, onnx_profile, roofline, write_profiles

    threads, profiles = max(cfg.threads), []
    bandwidth = memory_bandwidth_gb_s(threads)
    log(f"  memory bandwidth (copy, {threads} threads): {bandwidth:.1f} GB/s")
    for model in cfg.models:
        net = fold_batchnorm(create_model(model, pretrained=True))
        if "onnx" in cfg.targets:
            for precision in [p for p in TARGETS["onnx"].precisions
                              if cfg.precisions == ["all"] or p in cfg.precisions]:
                path, status = _artifact(model, "onnx", precision, cfg)
                if path is None:
                    log(f"  {model} onnx {precision}: {status}")
                    continue
                log(f"  profiling {model} onnx {precision} x{threads} ...")
                profiles.append(onnx_profile(f"{model} {precision}", net, cfg.size, threads, cfg.runs, path))
        if "tflite" in cfg.targets:
            asked = [p for p in cfg.precisions if p not in ("fp32", "all")]
            if asked:  # say so rather than profile fp32 in their place unannounced
                log(f"  {model} litert {', '.join(asked)}: not profiled (LiteRT layers are timed alone in fp32; "
                    "compare whole int8 files with python -m benchmark)")
            path, status = _artifact(model, "tflite", "fp32", cfg)
            whole = None
            if path is not None:
                from artifacts import load

                from .profile import median_ms

                run = load(path, threads)
                whole = median_ms(run, np.random.default_rng(0).random((*cfg.size, 3), dtype=np.float32), cfg.runs)
            log(f"  profiling {model} litert fp32 x{threads} (each conv alone) ...")
            from export.tflite import as_converted  # the layers the .tflite has (a wide separable conv is dense)

            profiles.append(litert_profile(f"{model} fp32", as_converted(net), cfg.size, threads, cfg.runs, whole))
    return write_profiles([roofline(p, bandwidth) for p in profiles], cfg.out)
