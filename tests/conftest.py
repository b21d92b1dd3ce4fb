from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models import create_model, model_config


def save_checkpoint(path: Path, name: str = "dped_mobile", **overrides) -> Path:
    """A small random-weight checkpoint in the training command's format."""
    torch.manual_seed(0)
    model = create_model(name, **overrides)
    with torch.no_grad():  # non-trivial BN statistics, so folding is exercised
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    torch.save({"model": name, "config": model_config(model), "state_dict": model.state_dict(), "meta": {}}, path)
    return path


@pytest.fixture
def small_qat_calibration(monkeypatch):
    """QAT's activation ranges from one 64 px crop instead of the export's four 512 px ones (speed)."""
    import train.qat

    monkeypatch.setattr(train.qat, "CALIBRATION_SIZE", (64, 64))
    monkeypatch.setattr(train.qat, "CALIBRATION_COUNT", 1)


def check_qat_run(run: Path, name: str, side: int = 64) -> None:
    """What a 2-step --qat run from ``name``'s shipped weights (``small_qat_calibration``) leaves in ``run``: a
    best.pt of step 0 or 2 recording the QAT's calibration, and a last.pt whose float network moved, a little."""
    best = torch.load(run / "best.pt", weights_only=True)   # step 0 (where QAT starts) competes
    assert best["meta"]["init"]["qat"]["calibration"]["size"] == [64, 64] and best["meta"]["step"] in (0, 2)
    shipped, tuned = create_model(name, pretrained=True), create_model(name, checkpoint=run / "last.pt")
    x = torch.rand(1, 3, side, side)
    with torch.no_grad():
        moved = (shipped(x) - tuned(x)).abs().max()
    assert 0 < moved < 0.1   # fine-tuned: changed, a little


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    return save_checkpoint(tmp_path / "tiny.pt", width=8, blocks=1)


def write_photo(path: Path, h: int = 48, w: int = 64, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx / w, yy / h, 0.5 + 0.3 * np.sin(xx / 5.0)], axis=2) + rng.normal(0, 0.03, (h, w, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(img * 255, 0, 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture
def dped_layout(tmp_path: Path) -> Path:
    """A tiny dataset in the DPED layout for phone 'iphone' (train and test patches)."""
    root = tmp_path / "dped"
    for sub, n in (("training_data", 6), ("test_data/patches", 2)):
        for i in range(n):
            write_photo(root / "iphone" / sub / "iphone" / f"{i}.jpg", 40, 40, seed=i)
            write_photo(root / "iphone" / sub / "canon" / f"{i}.jpg", 40, 40, seed=100 + i)
    (root / "iphone" / "test_data" / "full_size_test_images").mkdir(parents=True)
    return root


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> tuple[dict, Path]:
    """Every target and precision this machine can build, from a tiny checkpoint traced at 64x64 and resizable.
    Returns ({(target, precision): Written}, folder); targets whose backend is missing here are absent."""
    from artifacts import resolve
    from export.api import export_one
    from export.common import ExportSpec, MissingBackend

    root = tmp_path_factory.mktemp("all")
    ckpt = save_checkpoint(root / "tiny.pt", width=8, blocks=1)
    written = {}
    for target, precision in resolve("all", "all"):
        try:
            written[(target.name, precision)] = export_one(ExportSpec(
                checkpoint=str(ckpt), target=target.name, precision=precision, size=(64, 64), out=root / "out",
                calibration_count=4))
        except MissingBackend:
            continue
    return written, root / "out"
