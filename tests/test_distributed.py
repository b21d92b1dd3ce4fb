"""Where training runs: --device, --amp, and data-parallel runs through torchrun (gloo on this CPU machine)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from train import DPEDTrainConfig, train_dped
from train.__main__ import main as train_main
from train.distributed import Context

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--batch", "4", "--patch", "64", "--threads", "1", "--val-crop", "64", "--no-progress"]


def torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    torchrun_bin = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([torchrun_bin, "--standalone", "--nproc_per_node", "2", "-m", "train", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_one_line_exit_2(capsys):
    assert train_main(["dped", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--device cuda" in err and "CUDA" in err
    assert train_main(["intrinsic", "--device", "tpu"]) == 2
    assert "--device must be one of auto, cpu, cuda, mps" in capsys.readouterr().err


def test_shards_split_the_global_batch(monkeypatch, capsys):
    ranks = [Context(torch.device("cpu"), rank=r, world_size=3) for r in range(3)]
    assert [list(c.shard(6)) for c in ranks] == [[0, 1], [2, 3], [4, 5]]
    with pytest.raises(ValueError, match="--batch 5 does not split evenly across 3"):
        ranks[0].shard(5)
    assert Context(torch.device("cpu")).shard(5) == range(5)
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it: checked before any work, exit 2
    assert train_main(["dped", "--batch", "5"]) == 2
    assert "--batch 5 does not split evenly across 2 processes" in capsys.readouterr().err


def test_amp_trains_in_bfloat16_and_records_it(tmp_path, monkeypatch):
    import train.distributed

    monkeypatch.setattr(train.distributed, "cpu_has_bf16", lambda: True)  # as on a CPU with AVX512-BF16 or AMX
    summary = train_dped(DPEDTrainConfig(steps=2, out=str(tmp_path / "r"), amp=True, device="cpu", width=8, batch=2,
                                         patch=32, val_crop=48), progress=False)
    last = torch.load(tmp_path / "r" / "last.pt", weights_only=True)
    assert summary["precision"] == last["meta"]["precision"] == "bfloat16 autocast"
    assert last["meta"]["device"] == "cpu" and last["meta"]["world_size"] == 1
    assert all(v.dtype == torch.float32 for v in last["state_dict"].values() if v.is_floating_point())
    assert summary["steps_per_s"] > 0 and summary["items_per_s"] == pytest.approx(2 * summary["steps_per_s"], 1e-2)
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["amp"] is True and config["run"]["precision"] == "bfloat16 autocast"


def test_amp_on_a_cpu_without_bfloat16_trains_in_float32_and_says_so(tmp_path, monkeypatch, capsys):
    import train.distributed

    monkeypatch.setattr(train.distributed, "cpu_has_bf16", lambda: False)  # emulated bfloat16 is many times slower
    summary = train_dped(DPEDTrainConfig(steps=1, out=str(tmp_path / "r"), amp=True, device="cpu", width=8, batch=2,
                                         patch=32, val_crop=48), progress=False)
    assert summary["precision"] == "float32"
    assert "--amp: this CPU has no native bfloat16" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_processes_equal_one_process_resume_and_export(tmp_path):
    # The command, as a user types it (runs/ lands in the working folder).
    done = torchrun(["dped", "--steps", "4", "--batch", "4", "--patch", "64", "--threads", "1"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)  # rank 0 alone prints the summary
    assert summary["steps"] == 4 and summary["world_size"] == 2 and summary["backend"] == "gloo"
    run = tmp_path / "runs" / "dped_mobile"
    assert sorted(p.name for p in tmp_path.joinpath("runs").iterdir()) == ["dped_mobile"]  # one folder, not two
    from export.api import export_one
    from export.common import ExportSpec

    written = export_one(ExportSpec(checkpoint=str(run / "best.pt"), target="onnx", size=(64, 64),
                                    out=tmp_path / "exported"))
    assert written.ok and written.artifact.is_file()

    # First steps' gradients: Adam's first moment after 2 steps is 0.1 g2 + 0.09 g1 (a near-zero learning rate
    # keeps the weights, hence g2, as in the single-process run).
    tiny_lr = ["--lr", "1e-9", "--save-every", "2"]
    done = torchrun(["dped", "--steps", "2", "--out", str(tmp_path / "ddp"), *SMALL, *tiny_lr], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert train_main(["dped", "--steps", "2", "--out", str(tmp_path / "one"), *SMALL, *tiny_lr]) == 0
    ddp, one = (torch.load(tmp_path / d / "last.pt", weights_only=True) for d in ("ddp", "one"))
    assert ddp["meta"]["world_size"] == 2 and one["meta"]["world_size"] == 1
    for opt in ("opt_g", "opt_d"):
        a, b = ddp["train_state"][opt]["state"], one["train_state"][opt]["state"]
        worst = max(relative_error(a[k][m], b[k][m]) for k in b for m in ("exp_avg", "exp_avg_sq"))
        # float noise between thread counts of one process is ~4e-4 here; a per-process texture sum left
        # unscaled by the world size gives ~3e-2, per-process BatchNorm statistics more
        assert worst < 5e-3, (opt, worst)
    bn = [k for k in one["state_dict"] if k.endswith("running_var")]
    assert bn and max(relative_error(ddp["state_dict"][k], one["state_dict"][k]) for k in bn) < 1e-4

    # Resume in the distributed run continues at the right step.
    done = torchrun(["dped", "--steps", "4", "--out", str(tmp_path / "ddp"), "--resume", *SMALL, *tiny_lr], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["steps"] == 4
    last = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)
    assert last["train_state"]["step"] == 4 and last["train_state"]["sched_g"]["last_epoch"] == 4
    assert {int(s["step"]) for s in last["train_state"]["opt_g"]["state"].values()} == {4}


@pytest.mark.slow
def test_torchrun_trains_the_intrinsic_and_mdie_networks(tmp_path):
    for task, extra in (("intrinsic", ["--pretrain-steps", "1", "--patch", "32"]),
                        ("mdie", ["--patch", "32", "--val-crop", "64"])):
        done = torchrun([task, "--steps", "2", "--batch", "2", "--threads", "1", "--no-progress",
                         "--out", str(tmp_path / task), *extra], tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        summary = json.loads(done.stdout)
        assert summary["steps"] == 2 and summary["world_size"] == 2, task
        last = torch.load(tmp_path / task / "last.pt", weights_only=True)
        assert last["meta"]["world_size"] == 2 and last["train_state"]["step"] == 2
