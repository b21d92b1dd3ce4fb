"""MPSE phases 2 and 3: the style losses, Λ, the matting term, regions, the carry to full size, the recommender,
and python -m enhance --reference end to end."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from models import recommend, style, vgg
from photos import regions


@pytest.fixture(scope="module")
def trunk():
    return vgg.VGGTrunk()


def test_masked_gram_known_value():
    f = torch.zeros(2, 4, 4)
    f[0], f[1] = 1.0, 2.0
    mask = torch.zeros(4, 4)
    mask[:2] = 1
    assert torch.allclose(style.masked_gram(f, mask), torch.tensor([[1.0, 2.0], [2.0, 4.0]]))
    # features outside the mask do not count, and the area normalises (a bigger region, the same Gram)
    f[:, 2:] = 100
    assert torch.allclose(style.masked_gram(f, mask), torch.tensor([[1.0, 2.0], [2.0, 4.0]]))


def test_region_masks_and_shares():
    labels = torch.tensor([[0, 0, 1, 1]] * 4)
    masks = style.region_masks(labels, 3, (2, 2))
    assert masks.shape == (3, 2, 2)
    assert torch.allclose(masks.sum(0), torch.ones(2, 2))
    alpha, present = style.area_shares(masks, style.region_masks(torch.zeros(4, 4, dtype=torch.long), 3, (2, 2)))
    assert torch.allclose(alpha, torch.tensor([0.75, 0.25, 0.0]))
    assert present.tolist() == [True, False, False]   # region 1 is missing from the reference


def test_lambda_sums_to_one_over_present_regions():
    net = style.LambdaNet(layers=5, regions=4, channels=8)
    torch.nn.init.normal_(net.fc.weight)
    alpha = torch.rand(5, 4)
    present = torch.tensor([[True, True, False, True]] * 5)
    lam = net(torch.rand(8), torch.rand(8), alpha, present)
    assert lam.shape == (5, 4)
    assert torch.allclose(lam.sum(1), torch.ones(5))
    assert (lam[:, 2] == 0).all()


def test_matting_term_is_zero_for_constant_and_locally_affine_outputs():
    rng = np.random.default_rng(0)
    image = rng.random((12, 12, 3))
    term = style.MattingTerm(image)
    assert float(term(torch.full((1, 3, 12, 12), 0.4))) == pytest.approx(0, abs=1e-6)
    # O = A I + b everywhere lies in the Laplacian's null space (what makes it a photorealism term) ...
    a = torch.tensor([[0.9, 0.1, 0.0], [0.0, 0.8, 0.2], [0.1, 0.0, 0.7]])
    affine = torch.einsum("ij,hwj->ihw", a, torch.from_numpy(image).float())[None] + 0.05
    assert float(term(affine)) < 1e-4
    # ... and noise does not
    assert float(term(torch.from_numpy(rng.random((1, 3, 12, 12))).float())) > 1e-2


def test_content_and_style_terms_are_zero_on_the_photo_itself(trunk):
    x = torch.rand(1, 3, 48, 48)
    f = trunk(x, style.STYLE_LAYERS + style.CONTENT_LAYERS)
    assert float(style.content_loss(f, f)) == 0
    masks = {n: style.region_masks(torch.zeros(48, 48, dtype=torch.long), 2, f[n].shape[-2:])
             for n in style.STYLE_LAYERS}
    grams = {n: torch.stack([style.masked_gram(f[n][0], masks[n][r]) for r in range(2)]) for n in style.STYLE_LAYERS}
    terms = style.style_terms(f, grams, masks)
    assert terms.shape == (5, 2) and float(terms.abs().max()) == 0


def test_stylize_moves_colour_toward_the_reference(trunk):
    rng = np.random.default_rng(1)
    image = np.clip(0.3 + 0.05 * rng.standard_normal((40, 40, 3)), 0, 1).astype(np.float32)
    reference = np.clip(np.array([0.8, 0.5, 0.2]) + 0.05 * rng.standard_normal((40, 40, 3)), 0, 1).astype(np.float32)
    la, lb = regions.joint_regions(image, reference, 2)
    result = style.stylize(image, reference, la, lb, 2, trunk, style.StyleConfig(steps=25, size=40, lr=0.02))
    before = np.abs(image.mean((0, 1)) - reference.mean((0, 1))).sum()
    after = np.abs(result.output.mean((0, 1)) - reference.mean((0, 1))).sum()
    assert after < 0.7 * before
    assert result.output.shape == image.shape and result.lam.shape == (5, 2)
    assert np.allclose(result.lam.sum(1), 1, atol=1e-5)
    assert result.history[-1]["style"] < result.history[0]["style"]


def test_joint_regions_share_labels_across_photos():
    # both photos: a bright band over a dark band; the reference is darker and warmer as a whole
    a = np.zeros((20, 10, 3), np.float32)
    a[:10], a[10:] = 0.9, 0.2
    b = a * np.array([0.6, 0.5, 0.3], np.float32)
    la, lb = regions.joint_regions(a, b, 2)
    assert set(np.unique(la)) == {0, 1}
    assert (la == lb).all()                      # the same label for the same part of the frame
    assert (la[:10] == 0).all()                  # labels run top to bottom


def test_label_maps(tmp_path):
    Image.fromarray(np.array([[0, 5], [5, 9]], np.uint8)).save(tmp_path / "l.png")
    labels = regions.read_labels(tmp_path / "l.png", (4, 4))
    assert labels.shape == (4, 4) and set(np.unique(labels)) == {0, 5, 9}
    x, y, k = regions.compact(labels, np.full((2, 2), 7, np.int32))
    assert k == 4 and x.max() == 3 and (y == 2).all()   # 0, 5, 7, 9 -> 0, 1, 2, 3
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="single-channel"):
        regions.read_labels(tmp_path / "rgb.png", (4, 4))


def test_carry_reproduces_a_global_affine_colour_change_at_full_size():
    rng = np.random.default_rng(2)
    # a photo-like field: smooth colour variation plus fine texture
    full = np.clip(style.resize_photo(rng.random((8, 12, 3)).astype(np.float32), (64, 96))
                   + 0.03 * rng.standard_normal((64, 96, 3)), 0, 1).astype(np.float32)
    small = style.resize_photo(full, (16, 24))
    change = lambda x: np.clip(x @ np.array([[0.8, 0.1, 0], [0, 0.9, 0], [0.1, 0, 0.6]], np.float32).T + 0.1,  # noqa
                               0, 1)
    out = style.carry(full, small, change(small), band=7)
    err = np.abs(out - change(full))
    assert err.mean() < 0.005 and err.max() < 0.05   # the fine texture, unseen at 16 x 24, is carried too
    assert np.abs(style.carry(full, small, small) - full).max() < 0.01   # no change, no change


def test_margin_loss():
    a = torch.tensor([[1.0, 0.0]])
    pos = torch.tensor([[[1.0, 0.0], [0.9, 0.1]]])
    near, far = torch.tensor([[[0.95, 0.05]]]), torch.tensor([[[-1.0, 0.0], [0.0, 1.0]]])
    assert float(recommend.margin_loss(a, pos, far, margin=0.2)) == 0      # positives closer by the margin
    assert float(recommend.margin_loss(a, pos, near, margin=0.2)) > 0
    assert float(recommend.margin_loss(a, pos, far, margin=5.0)) > 0


def test_shipped_recommender_loads_and_ranks(trunk):
    net = recommend.load_recommender()
    assert net.trunk.fingerprint() == trunk.fingerprint()
    rng = np.random.default_rng(3)
    refs = {"a": rng.random((40, 50, 3)).astype(np.float32), "b": np.full((30, 30, 3), 0.5, np.float32)}
    ranking = recommend.rank_references(net, refs["a"], refs)
    assert ranking[0][0] == "a" and ranking[0][1] == pytest.approx(0, abs=1e-5)
    assert [r[0] for r in ranking] == ["a", "b"]


def test_recommender_refuses_other_checkpoints(tmp_path):
    torch.save({"model": "dped"}, tmp_path / "x.pt")
    with pytest.raises(recommend.CheckpointError, match="not a recommender"):
        recommend.load_recommender(tmp_path / "x.pt")
    ckpt = torch.load(recommend.SHIPPED, weights_only=True)
    ckpt["trunk"] = "0" * 16
    torch.save(ckpt, tmp_path / "other_trunk.pt")
    with pytest.raises(recommend.CheckpointError, match="another VGG-19 trunk"):
        recommend.load_recommender(tmp_path / "other_trunk.pt")


def test_vgg_trunk_is_reproducible_and_checks_layers(trunk):
    assert vgg.VGGTrunk().fingerprint() == trunk.fingerprint()
    assert vgg.channels("relu3_1") == 256
    with pytest.raises(ValueError, match="not in this trunk"):
        vgg.VGGTrunk(last="relu2_1")(torch.rand(1, 3, 8, 8), ("relu3_1",))
    with pytest.raises(ValueError, match="unknown VGG-19 layer"):
        vgg.VGGTrunk(last="fc8")


# --- end to end ---

def _photo(path, seed, size=(48, 64)):
    rng = np.random.default_rng(seed)
    img = np.clip(rng.random(size + (3,)) * 0.5 + seed * 0.1, 0, 1)
    Image.fromarray((img * 255).astype(np.uint8)).save(path)
    return path


STYLE_FAST = ["--style-steps", "2", "--style-size", "48"]


@pytest.mark.slow
def test_enhance_with_a_reference_and_postprocessing(tmp_path, capsys):
    from enhance.__main__ import main

    src, ref = _photo(tmp_path / "in.png", 1), _photo(tmp_path / "ref.png", 4, (40, 40))
    assert main([str(src), "-o", str(tmp_path / "out.png"), "--reference", str(ref), "--postprocess", "he,gamma",
                 *STYLE_FAST]) == 0
    out = capsys.readouterr().out
    assert "random VGG-19 weights" in out and "style: 2 steps at 48 px" in out
    assert np.asarray(Image.open(tmp_path / "out.png")).shape == (48, 64, 3)
    # semantic label maps: per-region equalization
    Image.fromarray(np.repeat([[0], [1]], [24, 24], 0).repeat(64, 1).astype(np.uint8)).save(tmp_path / "la.png")
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "lb.png")
    assert main([str(src), "-o", str(tmp_path / "out2.png"), "--reference", str(ref), "--labels",
                 str(tmp_path / "la.png"), "--reference-labels", str(tmp_path / "lb.png"), "--postprocess", "he",
                 *STYLE_FAST]) == 0


@pytest.mark.slow
def test_enhance_recommends_a_reference(tmp_path, capsys):
    from enhance.__main__ import main

    src = _photo(tmp_path / "in.png", 1)
    refs = tmp_path / "refs"
    refs.mkdir()
    _photo(refs / "a.png", 2, (32, 32))
    _photo(refs / "b.jpg", 5, (32, 48))
    (refs / "broken.png").write_bytes(b"not a png")
    assert main([str(src), "-o", str(tmp_path / "out.png"), "--reference", "auto", "--references", str(refs),
                 *STYLE_FAST]) == 0
    captured = capsys.readouterr()
    line = next(x for x in captured.out.splitlines() if x.startswith("reference:"))
    assert "a.png" in line and "b.jpg" in line and "->" in line
    assert "skipped reference" in captured.err


@pytest.mark.parametrize("extra, message", [
    (["--references", "."], "--references needs --reference"),
    (["--reference", "auto"], "needs --references"),
    (["--reference", "missing.jpg"], "no such file"),
    (["--reference", "REF", "--labels", "REF"], "go together"),
    (["--reference", "REF", "--style-size", "8"], "working size"),
    (["--reference", "REF", "--regions", "0"], "--regions"),
])
def test_enhance_style_option_errors(tmp_path, capsys, extra, message):
    from enhance.__main__ import main

    src = _photo(tmp_path / "in.png", 1)
    extra = [str(_photo(tmp_path / "ref.png", 2)) if e == "REF" else e for e in extra]
    assert main([str(src), "-o", str(tmp_path / "out.png"), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.png").exists()


@pytest.mark.slow
def test_train_recommend_writes_a_loadable_head(tmp_path):
    from train.__main__ import main

    out = tmp_path / "rec"
    assert main(["recommend", "--steps", "3", "--crops", "1", "--cells", "1", "--batch", "2", "--negatives", "2",
                 "--positives", "1", "--out", str(out), "--no-progress"]) == 0
    net = recommend.load_recommender(out / "recommender.pt")
    assert net.head.out_features == recommend.EMBEDDING
    assert main(["recommend", "--steps", "0", "--out", str(out)]) == 2


def test_enhance_unreadable_reference_is_one_line_and_exit_1(tmp_path, capsys):
    from enhance.__main__ import main

    src = _photo(tmp_path / "in.png", 1)
    (tmp_path / "ref.jpg").write_bytes(b"\xff\xd8 truncated")
    assert main([str(src), "-o", str(tmp_path / "out.png"), "--reference", str(tmp_path / "ref.jpg")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --reference") and "Traceback" not in err[0]
    assert not (tmp_path / "out.png").exists()


@pytest.mark.slow
def test_style_benchmark_writes_its_report(tmp_path):
    import json

    from benchmark.style import main

    assert main(["--steps", "1", "--size", "32", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "style.json").read_text())
    assert len(result["quality"]) == 4 and set(result["carry"]["psnr_vs_direct"]) >= {"local_affine (carry)"}
    assert (tmp_path / "style.md").read_text().startswith("| photo |")
    assert main(["--steps", "0"]) == 2
