import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import check_qat_run
from train import DPEDTrainConfig, TrainingDiverged, train_dped
from train.__main__ import main as train_main

TINY = dict(model="dped_mobile", width=8, batch=2, patch=32, val_every=2, save_every=2, val_crop=48)


def test_short_run_writes_atomic_checkpoints_and_resumes(tmp_path):
    out = tmp_path / "run"
    train_dped(DPEDTrainConfig(steps=3, out=str(out), **TINY), progress=False)
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["meta"]["step"] == 3 and last["train_state"]["step"] == 3
    assert set(torch.load(out / "best.pt", weights_only=True)) == {"model", "config", "state_dict", "meta"}
    assert "ssim" in last["meta"]["content_loss"]  # no VGG weights: the substitute is recorded
    assert list((out / "tb").iterdir())
    summary = train_dped(DPEDTrainConfig(steps=5, out=str(out), resume=True, **TINY), progress=False)
    assert summary["steps"] == 5
    assert not list(out.glob("*.tmp"))


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    train_dped(DPEDTrainConfig(steps=4, out=str(tmp_path / "a"), **TINY), progress=False)
    train_dped(DPEDTrainConfig(steps=2, out=str(tmp_path / "b"), **TINY), progress=False)
    train_dped(DPEDTrainConfig(steps=4, out=str(tmp_path / "b"), resume=True, **TINY), progress=False)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit for bit


def test_divergence_stops_with_a_message_and_keeps_the_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    train_dped(DPEDTrainConfig(steps=2, out=str(out), **TINY), progress=False)
    before = (out / "last.pt").read_bytes()
    with pytest.raises(TrainingDiverged, match="Last good checkpoint kept"):
        train_dped(DPEDTrainConfig(steps=4, out=str(out), resume=True, **{**TINY, "w_tv": float("nan")}),
                   progress=False)
    assert (out / "last.pt").read_bytes() == before


def test_the_pixel_loss_enters_the_generator_objective(tmp_path):
    """--w-pixel adds the full-resolution mean absolute error to the total (a NaN weight makes it diverge)."""
    with pytest.raises(TrainingDiverged):
        train_dped(DPEDTrainConfig(steps=2, out=str(tmp_path / "run"), **{**TINY, "w_pixel": float("nan")}),
                   progress=False)


def test_cli_errors_exit_cleanly(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        train_main(["dped", "--model", "unet"])
    assert err.value.code == 2 and "dped_mobile" in capsys.readouterr().err
    assert train_main(["dped", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")]) == 1
    assert "not found" in capsys.readouterr().err
    assert train_main(["dped", "--resume", "--out", str(tmp_path / "none")]) == 1


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_continues_at_the_right_step(tmp_path, dped_layout):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "train", "dped", "--steps", "40", "--out", str(out), "--no-progress",
            "--data", str(dped_layout), "--phone", "iphone",
            *[f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "last.pt").exists():
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(out / "last.pt", weights_only=True)["train_state"]["step"]
    assert 2 <= killed_at < 40 and killed_at % 2 == 0
    done = subprocess.run([*args, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["steps"] == 40
    assert torch.load(out / "last.pt", weights_only=True)["meta"]["step"] == 40


def test_dped_layout_trains_on_its_own_pairs(dped_layout, tmp_path):
    out = tmp_path / "r"
    summary = train_dped(DPEDTrainConfig(steps=4, data=str(dped_layout), phone="iphone", out=str(out), **TINY),
                         progress=False)
    metrics = summary["validation"]
    # validation runs on the layout's two test patches (40x40 photos): not on the built-in photos
    from train.data import open_pairs
    from train.dped import _val_tensors

    val = _val_tensors(open_pairs(str(dped_layout), "iphone", "val"), 48, 32)
    assert len(val) == 2 and val[0][0].shape[-2:] == (40, 40)
    from train.metrics import psnr_ssim

    input_psnr = sum(psnr_ssim(a, b)[0] for a, b in val) / len(val)
    assert metrics["input_psnr"] == pytest.approx(input_psnr, abs=1e-4)
    assert 5 < metrics["psnr"] < 60 and summary["steps"] == 4
    before = torch.load(out / "last.pt", weights_only=True)
    assert before["meta"]["train_config"]["data"] == str(dped_layout) and before["meta"]["step"] == 4
    assert set(before["train_state"]) >= {"generator", "discriminator", "opt_g", "opt_d", "step"}


def test_distillation_trains_on_the_teacher_and_refuses_bad_teachers(tmp_path, capsys):
    summary = train_dped(DPEDTrainConfig(steps=2, out=str(tmp_path / "r"), teacher="dped_mobile", **TINY),
                         progress=False)
    last = torch.load(tmp_path / "r" / "last.pt", weights_only=True)
    assert summary["teacher"] == last["meta"]["teacher"] == "dped_mobile" and summary["steps"] == 2
    assert train_main(["dped", "--teacher", "nosuch"]) == 2
    assert "--teacher nosuch: neither a model" in capsys.readouterr().err
    assert train_main(["dped", "--teacher", "intrinsic_decomposer_mobile", "--out", str(tmp_path / "x")]) == 1
    assert capsys.readouterr().err.strip().endswith("a teacher must enhance photos (3 channels in, 'enhanced' out)")
    assert not (tmp_path / "x").exists()  # refused before the run folder was made


@pytest.mark.parametrize("name", ["dped", "dped_mobile", "mdie"])   # BatchNorm; a global branch; three networks
def test_qat_graph_quantizes_and_gives_back_the_network_it_was_made_from(small_qat_calibration, name):
    """No step taken: the float network the QAT graph checkpoints is the one it was made from (BatchNorms folded
    into the convs, then kept as identity + bias), while the graph itself computes an int8 approximation."""
    from models import create_model
    from models.layers import fold_batchnorm
    from quantize.calibration import calibration_images
    from train.qat import QATGenerator

    model = create_model(name, pretrained=True)
    qat = QATGenerator(model, calibration_images(None, (64, 64), 1, progress=False))
    back = qat.float_network()
    x = torch.rand(1, 3, 64, 64)   # a multiple of every model's size multiple: the graph's H and W are
    with torch.no_grad():
        want, got, simulated = model(x), back(x), qat(x)
    assert (want - got).abs().max() < 1e-5
    folded, refolded = fold_batchnorm(model).state_dict(), fold_batchnorm(back).state_dict()
    assert folded.keys() == refolded.keys()
    assert all(torch.allclose(folded[k], refolded[k], atol=1e-6) for k in folded)
    psnr = -10 * torch.log10(((simulated - want) ** 2).mean())
    assert 20 < psnr < 70   # quantized: close, not equal


def test_qat_validation_copy_has_the_ranges_the_export_would_set(small_qat_calibration):
    """recalibrated() sets a copy's ranges afresh (on darker crops they shrink: accumulated, they could not) and
    leaves the training graph's alone; with the same weights and crops it is the same simulation."""
    from torchao.quantization.pt2e import FakeQuantize

    from train.qat import qat_network

    qat, _ = qat_network("dped_mobile_s")

    def scales(q):
        return torch.stack([m.scale.flatten()[0] for m in q.graph.modules()
                            if isinstance(m, FakeQuantize) and not m.is_per_channel])

    x = torch.rand(1, 3, 64, 64)
    before = scales(qat)
    with torch.no_grad():
        same = qat.recalibrated()
        assert torch.equal(scales(same), before) and torch.equal(same(x), qat(x))
        qat._feeds = [{k: v * 0.25 for k, v in feed.items()} for feed in qat._feeds]
        darker = qat.recalibrated()
    assert (scales(darker) < before).float().mean() > 0.5 and torch.equal(scales(qat), before)


def test_qat_run_fine_tunes_from_shipped_weights_and_writes_a_loadable_float_checkpoint(tmp_path,
                                                                                        small_qat_calibration):
    cfg = DPEDTrainConfig(model="dped_mobile_s", qat=True, steps=2, batch=2, patch=32, val_every=2, save_every=2,
                          val_crop=48, out=str(tmp_path / "qat"))
    assert cfg.init == "dped_mobile_s" and cfg.lr == 1e-5   # the shipped weights, a fine-tuning's rate
    summary = train_dped(cfg, progress=False)
    assert summary["steps"] == 2 and summary["validation"]["psnr"] > 15
    check_qat_run(tmp_path / "qat", "dped_mobile_s", side=48)
    resumed = train_dped(DPEDTrainConfig(model="dped_mobile_s", qat=True, steps=3, batch=2, patch=32, val_every=2,
                                         save_every=2, val_crop=48, out=str(tmp_path / "qat"), resume=True),
                         progress=False)
    assert resumed["steps"] == 3


def test_qat_refuses_what_would_change_the_network(capsys):
    assert DPEDTrainConfig().steps == 20000 and DPEDTrainConfig(qat=True).steps == 500
    assert train_main(["dped", "--qat", "--width", "32"]) == 2
    assert "--qat fine-tunes the --init network as it is: drop --width" in capsys.readouterr().err
    assert train_main(["dped", "--qat", "--amp"]) == 2
    assert "drop --amp" in capsys.readouterr().err
    from models.registry import WEIGHTS_DIR

    assert train_main(["dped", "--qat", "--init", str(WEIGHTS_DIR / "dped.pt")]) == 2
    assert "holds a dped network, not a dped_mobile one" in capsys.readouterr().err
