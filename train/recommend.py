"""python -m train recommend: the reference recommendation head of MPSE (paper 3.1.2), on the built-in photos.

The paper's positives and negatives are references that people marked among each photo's 60 nearest by D_sem.
Without such marks, the built-in photos give a task with a known answer: a phone-like photo of a scene must find
the clean photos of the same scene among those of the other scenes. The scenes are the cells of a grid over each
training photo (``--cells``: 2 x 2 gives 28 scenes from the 7 photos; with whole photos the head learned the 7
photos by heart and ranked new ones worse). Each anchor is a crop of a scene under a random phone degradation
(``camera+wide``); its positives are other clean crops of the same scene, its negatives clean crops of other
scenes. The head so learns to rank references by what they show, not by the
exposure, colour cast or noise that the phone added.

The VGG-19 trunk is frozen, so descriptors are computed once and the head trains on them in seconds. Validation:
each photo of the validation split, and each training photo, under the training degradation, the unseen one and
the night one, ranks the clean photos of all nine scenes; top-1 accuracy is reported for D_sem (the frozen
descriptor's distance) and for the trained embedding. The head is written to ``<out>/recommender.pt``;
``--out models/weights`` replaces the shipped one.

Example: python -m train recommend --out runs/recommend
"""
from __future__ import annotations

import dataclasses
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from artifacts.io import write_atomic
from models.recommend import Recommender, margin_loss, photo_tensor, recommender_checkpoint
from photos.degrade import DEGRADATIONS, degrade
from photos.samples import SPLITS, sample_photo

from .evaluate import night_degradation, unseen_degradation
from .loop import check_options


@dataclass
class RecommendTrainConfig:
    steps: int = field(default=100, metadata={"help": "optimiser steps on the head"})
    batch: int = field(default=16, metadata={"help": "anchors per step"})
    positives: int = field(default=4, metadata={"help": "positives per anchor"})
    negatives: int = field(default=12, metadata={"help": "negatives per anchor"})
    margin: float = field(default=0.2, metadata={"help": "margin α of the loss (embeddings have unit norm)"})
    crops: int = field(default=12, metadata={"help": "degraded and clean crops drawn per scene"})
    cells: int = field(default=2, metadata={"help": "each photo is cut into cells x cells scenes (1: whole photos)"})
    lr: float = field(default=3e-4, metadata={"help": "Adam learning rate"})
    seed: int = field(default=0, metadata={"help": "crops, degradations and batches"})
    vgg_weights: str | None = field(default=None, metadata={"help": "torchvision VGG-19 state dict (default: "
                                                                    "the seeded random trunk)"})
    threads: int | None = field(default=None, metadata={"help": "PyTorch CPU threads"})
    out: str = field(default="runs/recommend", metadata={"help": "folder for recommender.pt and summary.json"})

    def __post_init__(self) -> None:
        check_options(self)
        if self.margin < 0:
            raise ValueError(f"--margin must be 0 or more, got {self.margin}")
        out = Path(self.out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} is a file, not a folder")


def _cells(photo: np.ndarray, n: int) -> list[np.ndarray]:
    """The photo cut into an n x n grid of scenes."""
    h, w, _ = photo.shape
    return [photo[i * h // n:(i + 1) * h // n, j * w // n:(j + 1) * w // n] for i in range(n) for j in range(n)]


def _crop(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random square crop covering 50-100 % of the short side, flipped half of the time."""
    h, w, _ = photo.shape
    side = int(min(h, w) * rng.uniform(0.5, 1.0))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    crop = photo[y:y + side, x:x + side]
    return crop[:, ::-1] if rng.random() < 0.5 else crop


def _descriptors(net: Recommender, photos: list[np.ndarray]) -> torch.Tensor:
    return torch.cat([net.descriptor(photo_tensor(p)) for p in photos])


def scene_of(name: str) -> str:
    """The scene a built-in photo shows: the two halves of the stereo pair are one scene."""
    return name.rsplit("_", 1)[0] if name.startswith("stereo_") else name


def validation_descriptors(net: Recommender) -> tuple[list[str], torch.Tensor, dict[str, list]]:
    """What ``validation`` ranks, made once per run (D_sem is frozen, only the embedding trains): the scene of
    every clean reference photo, their descriptors, and per split the (scene, descriptor) of each degraded query."""
    names = list(SPLITS["train+"] + SPLITS["val"])
    refs = _descriptors(net, [sample_photo(n) for n in names])
    degradations = {"camera": lambda p: degrade(p, np.random.default_rng(7), DEGRADATIONS["camera"][0]),
                    "unseen": unseen_degradation, "night": night_degradation}
    queries = {split: [(scene_of(name), _descriptors(net, [fn(sample_photo(name))]))
                       for name in SPLITS[split] for fn in degradations.values()] for split in ("val", "train+")}
    return [scene_of(n) for n in names], refs, queries


def validation(net: Recommender, descriptors: tuple | None = None) -> dict:
    """Top-1 accuracy of D_sem and of the embedding: degraded photos ranking the clean photos of every scene (a
    hit when the nearest reference shows the query's scene). ``descriptors``: ``validation_descriptors(net)``."""
    scenes, refs, queries = descriptors or validation_descriptors(net)
    with torch.no_grad():
        refs_embedded = net.embed(refs)
    result = {}
    for split, pairs in queries.items():
        hits_sem = hits_emb = 0
        for truth, q in pairs:
            hits_sem += int(scenes[int((refs - q).norm(dim=1).argmin())] == truth)
            with torch.no_grad():
                hits_emb += int(scenes[int((refs_embedded - net.embed(q)).norm(dim=1).argmin())] == truth)
        key = "validation_scenes" if split == "val" else "training_scenes"
        result[key] = {"queries": len(pairs), "top1_d_sem": hits_sem / len(pairs),
                       "top1_embedding": hits_emb / len(pairs)}
    return result


def train_recommend(cfg: RecommendTrainConfig, progress: bool = True) -> dict:
    """Train the head; returns the summary also written to ``<out>/summary.json``."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net = Recommender(cfg.vgg_weights)
    scenes = [cell for name in SPLITS["train+"] for cell in _cells(sample_photo(name), cfg.cells)]
    degradations = DEGRADATIONS["camera+wide"]
    anchors, clean = [], []
    from tqdm import tqdm

    for scene in tqdm(scenes, desc="descriptors", unit="scene", disable=not progress, leave=False):
        anchors.append(_descriptors(net, [degrade(_crop(scene, rng), rng, degradations[i % len(degradations)])
                                          for i in range(cfg.crops)]))
        clean.append(_descriptors(net, [_crop(scene, rng) for _ in range(cfg.crops)]))
    held_out = validation_descriptors(net)
    before = validation(net, held_out)
    opt = torch.optim.Adam(net.head.parameters(), lr=cfg.lr)
    losses = []
    for _ in tqdm(range(cfg.steps), desc="recommend", unit="step", disable=not progress, leave=False):
        a, p, n = [], [], []
        for _ in range(cfg.batch):
            i = int(rng.integers(len(scenes)))
            others = [j for j in range(len(scenes)) if j != i]
            a.append(anchors[i][rng.integers(cfg.crops)])
            p.append(clean[i][rng.integers(cfg.crops, size=cfg.positives)])
            n.append(torch.stack([clean[j][rng.integers(cfg.crops)] for j in rng.choice(others, cfg.negatives)]))
        loss = margin_loss(net.embed(torch.stack(a)), net.embed(torch.stack(p)), net.embed(torch.stack(n)),
                           cfg.margin)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    after = validation(net, held_out)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"config": dataclasses.asdict(cfg), "trunk": net.trunk.describe(),
               "loss_first_10": float(np.mean(losses[:10])), "loss_last_10": float(np.mean(losses[-10:])),
               "top1": {k: {"d_sem": before[k]["top1_d_sem"], "embedding": after[k]["top1_embedding"],
                            "queries": after[k]["queries"]} for k in after},
               "seconds": round(time.perf_counter() - t0, 1), "checkpoint": str(out / "recommender.pt")}
    buf = io.BytesIO()
    torch.save(recommender_checkpoint(net, {k: v for k, v in summary.items() if k != "checkpoint"}), buf)
    write_atomic(out / "recommender.pt", buf.getvalue())
    write_atomic(out / "summary.json", json.dumps(summary, indent=2).encode())
    return summary
