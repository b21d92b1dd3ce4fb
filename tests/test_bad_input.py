"""Nothing lost, no traceback: refused outputs, bounded decoding, checked options, interrupted runs, bad resumes."""
import io
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from artifacts import Sidecar, target_of
from artifacts.tiling import enhance_tiled, padded
from enhance.__main__ import main as enhance_main
from photos import ImageError, read_uint8, set_max_pixels
from photos.io import DEFAULT_MAX_PIXELS
from tests.conftest import save_checkpoint, write_photo
from train.__main__ import main as train_main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny(tmp_path):
    return save_checkpoint(tmp_path / "tiny.pt", width=8, blocks=1)


# --- enhance never overwrites what it was not asked to ---------------------------------------------------------

@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_enhance_refuses_to_write_over_its_input(tmp_path, tiny, capsys, suffix):
    photo = write_photo(tmp_path / f"photo{suffix}")
    before = photo.read_bytes()
    assert enhance_main([str(photo), "-o", str(photo), "--checkpoint", str(tiny), "--force"]) == 2
    assert "is an input photo" in capsys.readouterr().err and photo.read_bytes() == before
    link = tmp_path / f"link{suffix}"
    link.symlink_to(photo)
    assert enhance_main([str(photo), "-o", str(link), "--checkpoint", str(tiny)]) == 2  # the same file by a link
    assert photo.read_bytes() == before


def test_enhance_batch_outputs_never_collide_and_existing_ones_need_force(tmp_path, tiny, capsys):
    a_jpg, a_png = write_photo(tmp_path / "a.jpg", seed=1), write_photo(tmp_path / "a.png", seed=2)
    out = tmp_path / "out"
    assert enhance_main([str(a_jpg), str(a_png), "-o", str(out), "--checkpoint", str(tiny), "--tile", "64"]) == 0
    made = sorted(p.name for p in out.iterdir())
    assert made == ["a_enhanced-1.png", "a_enhanced.png"]
    first = (out / "a_enhanced.png").read_bytes()
    assert enhance_main([str(a_png), "-o", str(out), "--checkpoint", str(tiny)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert (out / "a_enhanced.png").read_bytes() == first
    assert enhance_main([str(a_png), "-o", str(out), "--checkpoint", str(tiny), "--force", "--tile", "64"]) == 0
    assert (out / "a_enhanced.png").read_bytes() != first  # a.png, not a.jpg, this time
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left


@pytest.mark.parametrize("argv, needle", [
    (["-o", "{tmp}/out.xyz"], "Pillow cannot write '.xyz'"),
    (["-o", "{photo}/out.png"], "is a file, not a folder"),
    (["-o", "{tmp}/o.png", "--threads", "-1"], "--threads must be a positive integer"),
    (["-o", "{tmp}/o.png", "--tile", "0"], "--tile must be a positive integer"),
    (["-o", "{tmp}/o.png", "--max-pixels", "0"], "--max-pixels must be a positive number"),
    (["-o", "{tmp}/o.png", "--postprocess", "sharpen"], "unknown post-processing step 'sharpen'"),
])
def test_enhance_options_are_checked_before_any_work(tmp_path, capsys, argv, needle):
    photo = write_photo(tmp_path / "p.png")
    args = [a.format(tmp=tmp_path, photo=photo) for a in argv]
    assert enhance_main([str(photo), *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png"]  # nothing written


# --- bounded decoding --------------------------------------------------------------------------------------------

def _png_declaring(path: Path, w: int, h: int) -> Path:
    """A tiny PNG whose header declares w x h pixels and whose data is garbage (decoding it would fail)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))
    return path


def test_a_small_file_declaring_a_huge_image_is_refused_from_its_header(tmp_path, capsys):
    bomb = _png_declaring(tmp_path / "bomb.png", 14_500, 14_500)  # 210 MP in 2 KB
    assert bomb.stat().st_size < 5000
    with pytest.raises(ImageError, match=r"declares 14500x14500 pixels \(210 MP\), above the limit of 100 MP"):
        read_uint8(bomb)  # 'above the limit', not a decoding error: refused before any pixel was read
    assert enhance_main([str(bomb), "-o", str(tmp_path / "o.png")]) == 1
    assert "above the limit" in capsys.readouterr().err and not (tmp_path / "o.png").exists()


def test_the_pixel_limit_is_one_setting(tmp_path):
    photo = write_photo(tmp_path / "p.png", 40, 50)
    try:
        set_max_pixels(1999)
        with pytest.raises(ImageError, match="2000 pixels|above the limit"):
            read_uint8(photo)
        set_max_pixels(2000)
        assert read_uint8(photo).shape == (40, 50, 3)
    finally:
        set_max_pixels(DEFAULT_MAX_PIXELS)


# --- the reading and tiling path, on anything -------------------------------------------------------------------

MODES = ["L", "LA", "P", "RGB", "RGBA", "I;16"]


def _encode(mode: str, h: int, w: int, fmt: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    elif mode in ("RGB", "RGBA"):
        img = Image.fromarray(rng.integers(0, 256, (h, w, len(mode)), dtype=np.uint8), mode)
    else:
        img = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L").convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(h=st.integers(1, 300), w=st.integers(1, 300), mode=st.sampled_from(MODES),
       fmt=st.sampled_from(["PNG", "TIFF"]), cut=st.one_of(st.none(), st.floats(0.0, 0.99)),
       tile=st.integers(8, 96), multiple=st.sampled_from([1, 4, 32]), seed=st.integers(0, 9))
def test_reading_and_tiling_give_the_right_size_or_one_clear_error(tmp_path_factory, h, w, mode, fmt, cut, tile,
                                                                  multiple, seed):
    data = _encode(mode, h, w, fmt, seed)
    if cut is not None:
        data = data[:int(len(data) * cut)]
    path = tmp_path_factory.mktemp("p") / f"x.{fmt.lower()}"
    path.write_bytes(data)
    try:
        image = read_uint8(path)
    except ImageError as err:
        assert str(path) in str(err) and "\n" not in str(err)
        return
    assert image.shape == (h, w, 3) and image.dtype == np.uint8
    halo = min(3, (tile - 1) // 2)
    out = enhance_tiled(image, padded(lambda x: x[..., ::-1] * 0.5, multiple), tile, halo)
    assert out.shape == image.shape and out.dtype == np.uint8


# --- interrupted commands ----------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_export_ends_in_one_line_and_leaves_no_partial_file(tmp_path, tiny, sig):
    out = tmp_path / "exp"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "export", "--target", "all", "--precision", "all", "--checkpoint",
                             str(tiny), "--size", "64x64", "--out", str(out)],  # many short steps: stopped mid-way
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a background shell starts us with SIGINT ignored; the child must see Ctrl-C
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not out.exists():  # export is under way once OUT exists
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("interrupted")
    assert not list(out.glob(".*"))  # no temporaries; what is there is complete, gated and has its sidecar
    for artifact in [*out.glob("*.tflite"), *out.glob("*.onnx"), *out.glob("*.mlpackage")]:
        assert Sidecar.read(target_of(artifact).sidecar_path(artifact)).status == "ok"


# --- resume ------------------------------------------------------------------------------------------------------

RUN = ["--width", "8", "--batch", "2", "--patch", "32", "--val-every", "2", "--save-every", "2", "--val-crop", "48",
       "--no-progress"]


def test_resume_falls_back_to_the_previous_checkpoint_then_says_which_file(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main(["dped", "--steps", "4", "--out", str(out), *RUN]) == 0
    assert torch.load(out / "last.prev.pt", weights_only=True)["train_state"]["step"] == 2
    (out / "last.pt").write_bytes((out / "last.pt").read_bytes()[:500])  # truncated, as by a full disk
    capsys.readouterr()
    assert train_main(["dped", "--steps", "6", "--out", str(out), "--resume", *RUN]) == 0
    assert "cannot be read; resuming from" in capsys.readouterr().err
    assert torch.load(out / "last.pt", weights_only=True)["meta"]["step"] == 6
    for name in ("last.pt", "last.prev.pt"):
        (out / name).write_bytes(b"")
    assert train_main(["dped", "--steps", "8", "--out", str(out), "--resume", *RUN]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot resume: no readable checkpoint" in err and "last.pt" in err


def test_resume_names_the_option_that_conflicts_with_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main(["dped", "--steps", "2", "--out", str(out), *RUN]) == 0
    capsys.readouterr()
    assert train_main(["dped", "--steps", "4", "--out", str(out), "--resume", *RUN[:0], "--width", "16",
                       *RUN[2:]]) == 1
    assert "--width 16 conflicts with the run" in capsys.readouterr().err
    assert train_main(["dped", "--model", "dped", "--steps", "4", "--out", str(out), "--resume", *RUN]) == 1
    assert "--model dped conflicts" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value, needle", [
    ("--patch", "8", "--patch must be at least 24"), ("--save-every", "0", "--save-every must be a positive"),
    ("--batch", "0", "--batch must be a positive"), ("--steps", "0", "--steps must be a positive"),
    ("--lr", "-1", "--lr must be > 0"),
])
def test_training_options_are_checked_before_any_work(tmp_path, capsys, flag, value, needle):
    assert train_main(["dped", flag, value, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and not (tmp_path / "r").exists()
