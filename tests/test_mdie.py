"""MDIE: intrinsic networks, the multi-domain generator, their losses, data and trainings."""
import json

import numpy as np
import pytest
import torch

from models import (DOMAINS, MDIEDiscriminator, create_model, domain_label, fold_batchnorm, load_checkpoint)
from tests.conftest import check_qat_run, save_checkpoint, write_photo
from train import losses
from train.__main__ import main as train_main
from train.domains import builtin_domain_pairs
from train.data import item_rngs
from train.intrinsic_data import intrinsic_folder, labelled_batch, shading_field, validation_triples
from train.mdie import noise_sigma, sharpness
from train.data import DatasetError


@pytest.mark.parametrize("name", ["intrinsic_decomposer", "intrinsic_decomposer_mobile"])
def test_decomposer_is_consistent_with_image_formation(name):
    """A = I / S * exp(r) (clipped): with the albedo correction r at zero, A * S reproduces the image."""
    model = create_model(name, width=4)
    head = model.net.head.conv
    head = getattr(head, "pointwise", head)
    with torch.no_grad():
        head.weight[3:] = 0
        head.bias[3:] = 0
    image = torch.rand(1, 3, 40, 56) * 0.3
    albedo, shading = model(image)
    assert torch.allclose(albedo * shading, image, atol=1e-5)


@pytest.mark.parametrize("name", ["intrinsic_decomposer_mobile", "intrinsic_composer_mobile", "mdie"])
def test_fold_batchnorm_keeps_intrinsic_models(tmp_path, name):
    small = {"mdie": {"width": 4, "generator_width": 8, "blocks": 1}}.get(name, {"width": 4})
    model = create_model(name, checkpoint=save_checkpoint(tmp_path / "c.pt", name, **small))
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(1, model.contract.channels, 64, 64)
    a, b = model(x), folded(x)
    for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        assert torch.allclose(u, v, atol=1e-5)


def test_generator_label_changes_the_output_and_receptive_field_holds():
    g = create_model("mdie_generator", width=8, blocks=1)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x = torch.rand(1, 6, 80, 80) * 0.5 + 0.25
    low, high = g(x, domain_label("noise", False)), g(x, domain_label("noise", True))
    assert not torch.allclose(low, high)
    bumped = x.clone()
    bumped[0, :, 40, 40] += 0.2
    with torch.no_grad():
        changed = (g(bumped) - g(x)).abs().sum(dim=(0, 1)) > 0
    rows = changed.any(dim=1).nonzero().flatten()
    assert int(rows.max() - rows.min()) + 1 <= g.contract.receptive_field


def test_discriminator_has_source_map_and_domain_logits():
    src, cls = MDIEDiscriminator(width=8).eval()(torch.rand(2, 6, 64, 48))
    assert src.shape == (2, 1, 4, 3) and cls.shape == (2, len(DOMAINS))


def test_mdie_losses_on_tiny_tensors():
    logits = torch.tensor([[5.0, -3.0, 0.0], [-5.0, 2.0, 0.0]])
    good = losses.domain_classification_loss(logits, 0, torch.tensor([1.0, 0.0]))
    bad = losses.domain_classification_loss(logits, 0, torch.tensor([0.0, 1.0]))
    assert good < 0.01 < 4 < bad
    # the mask vector: other datasets' logits do not count
    other = logits.clone()
    other[:, 1:] = 100.0
    assert torch.equal(losses.domain_classification_loss(other, 0, torch.tensor([1.0, 0.0])), good)
    assert losses.adversarial_loss(torch.full((1, 1, 2, 2), 9.0), True) < 1e-3
    assert losses.adversarial_loss(torch.full((1, 1, 2, 2), 9.0), False) > 8
    x = torch.rand(1, 6, 4, 4)
    assert losses.cycle_loss(x, x) == 0 and losses.cycle_loss(x + 0.5, x) == pytest.approx(0.5)
    assert losses.reconstruction_loss(x[:, :3], x[:, :3] + 0.1) == pytest.approx(0.01)
    assert losses.smoothness_loss(torch.full((1, 3, 5, 5), 0.7)) == 0


def test_synthetic_intrinsics_have_exact_ground_truth():
    image, albedo, shading = labelled_batch(None, 64, item_rngs((0, 0), range(3)))
    assert image.shape == albedo.shape == shading.shape == (3, 3, 64, 64)
    assert torch.allclose(image, albedo * shading)
    assert shading.min() > 0.1 and shading.max() <= 1.0 + 1e-6
    again = labelled_batch(None, 64, item_rngs((0, 0), range(3)))[0]
    assert torch.equal(image, again)  # a function of the seed
    s = shading_field(64, 64, np.random.default_rng(1))
    assert np.abs(np.diff(s, axis=0)).mean() < np.abs(np.diff(albedo[0].numpy(), axis=1)).mean()  # smooth
    assert len(validation_triples(2, 64)) == 2


def test_intrinsic_folder_layout(tmp_path):
    for sub in ("clean/scene", "albedo/scene", "shading/scene"):
        write_photo(tmp_path / sub / "frame_0001.png", 40, 40)
    write_photo(tmp_path / "clean/scene/frame_0002.png", 40, 40)  # no albedo/shading: ignored with a warning
    folder = intrinsic_folder(tmp_path)
    assert len(folder.images) == 1
    image, albedo, shading = labelled_batch(folder, 32, item_rngs((0, 0), range(2)))
    assert image.shape == (2, 3, 32, 32)
    with pytest.raises(DatasetError, match="albedo"):
        intrinsic_folder(tmp_path / "clean")


def test_builtin_domains_differ_in_their_attribute():
    noise = builtin_domain_pairs("noise", "val").pair(0)
    assert noise_sigma(noise[0]) > 2 * noise_sigma(noise[1])
    texture = builtin_domain_pairs("texture", "val").pair(0)
    assert sharpness(texture[0]) < 0.5 * sharpness(texture[1])
    low, high = builtin_domain_pairs("color", "val").pair(0)
    sat = lambda x: (x.max(2) - x.min(2)).mean()  # noqa: E731
    assert sat(low) < sat(high)


def _state(path):
    return load_checkpoint(path)["state_dict"]


@pytest.mark.slow
def test_intrinsic_and_mdie_train_five_steps_and_resume(tmp_path, capsys):
    common = ["--threads", "1", "--no-progress", "--seed", "3"]
    small = ["--width", "4", "--batch", "2", "--patch", "32", "--pretrain-steps", "3", "--val-every", "5"]
    assert train_main(["intrinsic", *small, *common, "--steps", "5", "--out", str(tmp_path / "full")]) == 0
    assert train_main(["intrinsic", *small, *common, "--steps", "2", "--save-every", "1",
                       "--out", str(tmp_path / "cut")]) == 0
    assert train_main(["intrinsic", *small, *common, "--steps", "5", "--resume", "--out", str(tmp_path / "cut")]) == 0
    full, cut = _state(tmp_path / "full/last.pt"), _state(tmp_path / "cut/last.pt")
    assert all(torch.equal(full[k], cut[k]) for k in full)  # a resumed run repeats the uninterrupted one
    summary = json.loads((tmp_path / "full/summary.json").read_text())
    assert summary["steps"] == 5 and "shading_correlation" in summary["validation"]
    assert create_model("intrinsic_decomposer_mobile", checkpoint=tmp_path / "full/decomposer.pt")

    mdie = ["--decomposer", str(tmp_path / "full/decomposer.pt"), "--composer", str(tmp_path / "full/composer.pt"),
            "--generator-width", "8", "--blocks", "1", "--batch", "2", "--patch", "32", "--val-every", "5",
            "--val-crop", "64", *common]
    assert train_main(["mdie", *mdie, "--steps", "5", "--out", str(tmp_path / "m_full")]) == 0
    assert train_main(["mdie", *mdie, "--steps", "3", "--save-every", "1", "--out", str(tmp_path / "m_cut")]) == 0
    assert train_main(["mdie", *mdie, "--steps", "5", "--resume", "--out", str(tmp_path / "m_cut")]) == 0
    full, cut = _state(tmp_path / "m_full/last.pt"), _state(tmp_path / "m_cut/last.pt")
    assert all(torch.equal(full[k], cut[k]) for k in full)
    metrics = json.loads((tmp_path / "m_full/summary.json").read_text())["validation"]
    assert set(metrics) == set(DOMAINS) and "noise_sigma" in metrics["noise"]["high"]
    net = create_model("mdie", checkpoint=tmp_path / "m_full/best.pt")
    assert net(torch.rand(1, 3, 40, 50)).shape == (1, 3, 40, 50)


def test_mdie_without_intrinsic_weights_says_what_to_do(tmp_path, capsys):
    code = train_main(["mdie", "--decomposer", str(tmp_path / "missing.pt"), "--no-progress",
                       "--out", str(tmp_path / "m")])
    assert code == 1 and "python -m train intrinsic" in capsys.readouterr().err


def test_mdie_qat_fine_tunes_the_shipped_pipeline_toward_its_float_output(tmp_path, small_qat_calibration, capsys):
    from train.mdie import MDIETrainConfig, train_mdie

    cfg = MDIETrainConfig(qat=True, steps=2, batch=2, patch=32, val_every=2, save_every=2, val_crop=64,
                          out=str(tmp_path / "q"))
    assert cfg.init == "mdie" and cfg.lr == 3e-5 and MDIETrainConfig().steps == 900
    summary = train_mdie(cfg, progress=False)
    assert summary["steps"] == 2 and 25 < summary["validation"]["fidelity"] < 80   # int8: close, not equal
    assert set(summary["validation"]) >= {f"{d}/psnr" for d in DOMAINS}
    check_qat_run(tmp_path / "q", "mdie")
    assert train_mdie(MDIETrainConfig(qat=True, steps=3, batch=2, patch=32, val_every=2, save_every=2, val_crop=64,
                                      out=str(tmp_path / "q"), resume=True), progress=False)["steps"] == 3
    assert train_main(["mdie", "--resume", "--out", str(tmp_path / "q")]) == 1   # the GAN loop: not this run
    assert "was started with --qat: resume with it" in capsys.readouterr().err

    assert train_main(["mdie", "--qat", "--blocks", "1"]) == 2
    assert "--qat fine-tunes the --init network as it is: drop --blocks" in capsys.readouterr().err
    assert train_main(["mdie", "--init", "mdie"]) == 2
    assert "--init names the pipeline --qat fine-tunes" in capsys.readouterr().err
    assert train_main(["mdie", "--qat", "--init", str(tmp_path / "nosuch.pt")]) == 2
    assert "nosuch.pt: neither a model" in capsys.readouterr().err
    save_checkpoint(tmp_path / "other.pt")
    assert train_main(["mdie", "--qat", "--init", str(tmp_path / "other.pt")]) == 2
    assert "holds a dped_mobile network" in capsys.readouterr().err


@pytest.mark.slow
def test_decomposer_exports_with_two_named_outputs_and_mdie_passes_its_gate(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from artifacts import Sidecar
    from export.__main__ import main as export_main

    dec = save_checkpoint(tmp_path / "dec.pt", "intrinsic_decomposer_mobile", width=4)
    assert export_main(["--target", "tflite", "--model", "intrinsic_decomposer_mobile", "--checkpoint", str(dec),
                        "--size", "64x64", "--out", str(tmp_path)]) == 0
    signature = Interpreter(model_path=str(tmp_path / "intrinsic_decomposer_mobile_fp32.tflite")) \
        .get_signature_list()["enhance"]
    assert signature["inputs"] == ["image"] and sorted(signature["outputs"]) == ["albedo", "shading"]
    record = Sidecar.read(tmp_path / "intrinsic_decomposer_mobile_fp32.json")
    assert [o.name for o in record.outputs] == ["albedo", "shading"] and record.outputs[0].channels == 3
    assert record.size_multiple == 32 and record.fidelity.psnr_db_min >= 60 and record.tile % 32 == 0

    assert export_main(["--target", "onnx", "--model", "intrinsic_decomposer_mobile", "--checkpoint", str(dec),
                        "--out", str(tmp_path)]) == 0  # resizable: also run at a photo's own size (x32)
    samples = Sidecar.read(tmp_path / "intrinsic_decomposer_mobile_fp32.onnx.json").fidelity.samples
    assert any(s.hw != [512, 512] for s in samples)

    pipe = save_checkpoint(tmp_path / "mdie.pt", "mdie", width=4, generator_width=8, blocks=1)
    assert export_main(["--target", "tflite", "--model", "mdie", "--checkpoint", str(pipe),
                        "--out", str(tmp_path)]) == 0
    record = Sidecar.read(tmp_path / "mdie_fp32.json")
    assert record.resizable and record.fidelity.psnr_db_min >= 60 and not record.halo_exact


def test_export_refuses_models_that_do_not_take_photos(capsys):
    from export.__main__ import main as export_main

    assert export_main(["--target", "tflite", "--model", "intrinsic_composer_mobile"]) == 2
    assert "--model mdie" in capsys.readouterr().err
    assert export_main(["--target", "onnx", "--model", "mdie", "--size", "100x100"]) == 2
    assert "multiples of 32" in capsys.readouterr().err


def test_enhance_runs_mdie_and_refuses_the_decomposer(tmp_path, capsys):
    from PIL import Image

    from enhance.__main__ import main as enhance_main

    photo = write_photo(tmp_path / "p.png", 70, 90)
    pipe = save_checkpoint(tmp_path / "mdie.pt", "mdie", width=4, generator_width=8, blocks=1)
    assert enhance_main([str(photo), "-o", str(tmp_path / "o.png"), "--model", "mdie", "--checkpoint", str(pipe),
                         "--tile", "160"]) == 0
    assert Image.open(tmp_path / "o.png").size == (90, 70)
    dec = save_checkpoint(tmp_path / "dec.pt", "intrinsic_decomposer_mobile", width=4)
    assert enhance_main([str(photo), "-o", str(tmp_path / "d.png"), "--model", "intrinsic_decomposer_mobile",
                         "--checkpoint", str(dec)]) == 1
    assert "not a photo enhancer" in capsys.readouterr().err
