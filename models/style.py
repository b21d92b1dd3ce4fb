"""MPSE phase 2 (paper 3.1.2): semantic style enhancement of a photo toward a reference (`python -m enhance
--reference` runs it on photos of any size).

The output O starts from the phase-1 photo I and is optimised for

    L(O, Λ) = L_c + β L_s + γ L_m + τ TV(O)

- L_c, content: Σ_l 1 / (2 N_l D_l) ||F_l(O) - F_l(I)||², on VGG-19 relu4_2 (N_l channels, D_l positions).
- L_s, style: Σ_l Σ_r Λ_r^l / (2 N_l²) ||G_r^l(O) - G_r^l(R)||², on relu1_1 .. relu5_1, where G_r^l is the Gram
  matrix of layer l's features inside region r (masked, divided by the region's area so that regions of any size
  compare).
- Λ_r^l = softmax over regions of α_r^l H_r^l. H = FC(concat(pool(conv5(O)), pool(conv5(R)))), an FC layer with
  L x M outputs (layers x regions); α_r^l is region r's share of the frame at layer l, the mean of its shares in
  Seg(O) and Seg(R). A region missing from either photo gets Λ = 0. O and the FC layer are updated alternately.
- L_m, photorealism: Σ_c V_c[O]ᵀ M_I V_c[O] / P with M_I the matting Laplacian of I (pymatting's closed-form
  Laplacian, 3x3 windows), divided by the pixel count P so that γ does not depend on the working size.

The optimisation runs at a working size (``StyleConfig.size`` on the long side). :func:`carry` brings the result
back to full resolution as a local affine colour transform of the full-size photo: the coefficients that map I to
O in each window at the working size (a guided filter with the photo as its guide) are upsampled and applied to
the full-size I (the change O - I is what is fitted), so full-resolution detail is kept and the colour change is the
one L_m asks to be locally affine.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYERS = ("relu4_2",)
POOL_LAYER = "relu5_1"          # "global pooling after conv5" for the Λ network
MIN_SHARE = 1e-3                # a region covering less of a photo than this is absent from it


@dataclass(frozen=True)
class StyleConfig:
    steps: int = 100            # optimisation steps (each: one step of O, one of the Λ layer)
    size: int = 192             # working size, long side in pixels
    beta: float = 100.0         # style weight β (paper: 100)
    gamma: float = 11.0         # photorealism weight γ (paper: 11)
    tv: float = 1e-3            # total-variation weight τ
    lr: float = 0.01            # Adam step on O (pixel units)
    lambda_lr: float = 1e-3     # Adam step on the Λ layer
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.size < 32:
            raise ValueError(f"style steps must be >= 0 and the working size >= 32 (got {self.steps}, {self.size})")
        for name in ("beta", "gamma", "tv", "lr", "lambda_lr"):
            if getattr(self, name) < 0:
                raise ValueError(f"style {name} must not be negative, got {getattr(self, name)}")


@dataclass
class StyleResult:
    output: np.ndarray          # (h, w, 3) float32 at the working size
    lam: np.ndarray             # (L, M) final Λ, rows STYLE_LAYERS, columns regions
    history: list[dict] = dataclasses.field(default_factory=list)   # loss terms, every 10 steps and the last


# --- the loss terms ---

def masked_gram(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(C, C) Gram matrix of (C, h, w) features inside a soft (h, w) mask, divided by the mask's area."""
    c = features.shape[0]
    f = features.reshape(c, -1) * mask.reshape(1, -1)
    return f @ features.reshape(c, -1).T / mask.sum().clamp_min(1e-6)


def region_masks(labels: torch.Tensor, regions: int, hw: tuple[int, int]) -> torch.Tensor:
    """(M, h, w) soft masks of an integer (H, W) label map, area-averaged down to (h, w)."""
    onehot = F.one_hot(labels.long(), regions).permute(2, 0, 1)[None].float()
    return F.interpolate(onehot, size=hw, mode="area")[0]


def area_shares(masks_o: torch.Tensor, masks_r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """α (M,): mean of each region's share of O's and R's frame; present (M,): in both photos."""
    so, sr = masks_o.mean((1, 2)), masks_r.mean((1, 2))
    return (so + sr) / 2, (so > MIN_SHARE) & (sr > MIN_SHARE)


def style_terms(fo: dict[str, torch.Tensor], grams_r: dict[str, torch.Tensor],
                masks_o: dict[str, torch.Tensor]) -> torch.Tensor:
    """(L, M): 1 / (2 N_l²) ||G_r^l(O) - G_r^l(R)||² per style layer and region (unweighted by Λ)."""
    rows = []
    for name in STYLE_LAYERS:
        f, m = fo[name][0], masks_o[name]
        n = f.shape[0]
        rows.append(torch.stack([((masked_gram(f, m[r]) - grams_r[name][r]) ** 2).sum() / (2 * n * n)
                                 for r in range(m.shape[0])]))
    return torch.stack(rows)


def content_loss(fo: dict[str, torch.Tensor], fi: dict[str, torch.Tensor]) -> torch.Tensor:
    """Σ_l 1 / (2 N_l D_l) ||F_l(O) - F_l(I)||² over CONTENT_LAYERS."""
    return sum(((fo[n] - fi[n]) ** 2).sum() / (2 * fo[n][0].numel()) for n in CONTENT_LAYERS)


def tv_loss(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean() + (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean()


class LambdaNet(nn.Module):
    """Λ = softmax over regions of α ⊙ H, H = FC(concat(GAP(conv5(O)), GAP(conv5(R)))) with L x M outputs.

    The FC starts at weight 0 and bias 1, so the first Λ is the softmax of the area shares."""

    def __init__(self, layers: int, regions: int, channels: int = 512):
        super().__init__()
        self.layers, self.regions = layers, regions
        self.fc = nn.Linear(2 * channels, layers * regions)
        nn.init.zeros_(self.fc.weight)
        nn.init.ones_(self.fc.bias)

    def forward(self, pooled_o: torch.Tensor, pooled_r: torch.Tensor, alpha: torch.Tensor,
                present: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([pooled_o, pooled_r])).view(self.layers, self.regions)
        logits = (alpha * h).masked_fill(~present, float("-inf"))
        return torch.softmax(logits, dim=1)


class MattingTerm:
    """L_m = Σ_c V_c[O]ᵀ M_I V_c[O] / P, with M_I the closed-form matting Laplacian of I (pymatting)."""

    def __init__(self, image: np.ndarray, epsilon: float = 1e-7, radius: int = 1):
        from pymatting import cf_laplacian  # numba-compiled; imported (and compiled once) only when used

        lap = cf_laplacian(np.ascontiguousarray(image, dtype=np.float64), epsilon=epsilon, radius=radius).tocoo()
        self.pixels = image.shape[0] * image.shape[1]
        self.matrix = torch.sparse_coo_tensor(np.vstack([lap.row, lap.col]), lap.data.astype(np.float32),
                                              lap.shape, check_invariants=False).coalesce()

    def __call__(self, o: torch.Tensor) -> torch.Tensor:
        v = o[0].reshape(3, -1).T                       # (P, 3): one column per channel
        return (v * torch.sparse.mm(self.matrix, v)).sum() / self.pixels


# --- the optimisation ---

def _tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(x, dtype=np.float32)).permute(2, 0, 1)[None]


def working_size(shape: tuple[int, ...], size: int) -> tuple[int, int]:
    """(h, w) with the long side ``size`` (never larger than the photo)."""
    h, w = shape[:2]
    scale = min(1.0, size / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def stylize(image: np.ndarray, reference: np.ndarray, labels: np.ndarray, reference_labels: np.ndarray,
            regions: int, trunk: nn.Module, config: StyleConfig = StyleConfig(), progress: bool = False) -> StyleResult:
    """Optimise O from ``image`` toward ``reference``'s per-region style. Both photos are float (h, w, 3) in
    [0, 1] at the working size; label maps are integer (h, w) with values in [0, regions)."""
    torch.manual_seed(config.seed)
    i, r = _tensor(image), _tensor(reference)
    with torch.no_grad():
        fi = trunk(i, STYLE_LAYERS + CONTENT_LAYERS)
        fr = trunk(r, STYLE_LAYERS)
        masks_o = {n: region_masks(torch.from_numpy(labels), regions, fi[n].shape[-2:]) for n in STYLE_LAYERS}
        masks_r = {n: region_masks(torch.from_numpy(reference_labels), regions, fr[n].shape[-2:])
                   for n in STYLE_LAYERS}
        grams_r = {n: torch.stack([masked_gram(fr[n][0], masks_r[n][k]) for k in range(regions)])
                   for n in STYLE_LAYERS}
        pooled_r = fr[POOL_LAYER][0].mean((1, 2))
        shares = [area_shares(masks_o[n], masks_r[n]) for n in STYLE_LAYERS]
        alpha = torch.stack([a for a, _ in shares])
        present = torch.stack([p for _, p in shares])
    matting = MattingTerm(image) if config.gamma > 0 else None
    lam_net = LambdaNet(len(STYLE_LAYERS), regions, pooled_r.numel())
    o = i.clone().requires_grad_(True)
    opt_o = torch.optim.Adam([o], lr=config.lr)
    opt_l = torch.optim.Adam(lam_net.parameters(), lr=config.lambda_lr)
    history: list[dict] = []
    steps = range(config.steps)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc="style", unit="step", leave=False)
    lam = lam_net(fi[POOL_LAYER][0].mean((1, 2)), pooled_r, alpha, present).detach()
    for step in steps:
        fo = trunk(o, STYLE_LAYERS + CONTENT_LAYERS)
        terms = style_terms(fo, grams_r, masks_o)
        lam = lam_net(fo[POOL_LAYER][0].mean((1, 2)).detach(), pooled_r, alpha, present)
        lc = content_loss(fo, fi)
        ls = (lam.detach() * terms).nansum()
        lm = matting(o) if matting else o.new_zeros(())
        total = lc + config.beta * ls + config.gamma * lm + config.tv * tv_loss(o)
        opt_o.zero_grad()
        total.backward()
        opt_o.step()
        with torch.no_grad():
            o.clamp_(0, 1)
        # the Λ layer's turn, on the style terms O had before its step
        opt_l.zero_grad()
        (lam * terms.detach()).nansum().backward()
        opt_l.step()
        if step % 10 == 0 or step == config.steps - 1:
            history.append({"step": step, **{k: v.item() for k, v in
                                             (("total", total), ("content", lc), ("style", ls), ("matting", lm))}})
    return StyleResult(o.detach()[0].permute(1, 2, 0).numpy().copy(), lam.detach().numpy(), history)


# --- back to full resolution ---

def affine_coefficients(guide: np.ndarray, target: np.ndarray, radius: int = 4,
                        eps: float = 1e-3) -> np.ndarray:
    """(h, w, 4, 3) local affine maps [A; b] with target ≈ [guide, 1] @ [A; b] in each (2r+1)² window (He et
    al.'s guided filter with a colour guide), box-averaged over the windows that cover each pixel."""
    size = 2 * radius + 1
    box = lambda x: ndimage.uniform_filter(x, size=(size, size) + (1,) * (x.ndim - 2), mode="reflect")  # noqa: E731
    g, t = guide.astype(np.float64), target.astype(np.float64)
    mg, mt = box(g), box(t)
    cov_gg = box(g[..., :, None] * g[..., None, :]) - mg[..., :, None] * mg[..., None, :]
    cov_gt = box(g[..., :, None] * t[..., None, :]) - mg[..., :, None] * mt[..., None, :]
    a = np.linalg.solve(cov_gg + eps * np.eye(3), cov_gt)                  # (h, w, 3, 3)
    b = mt - np.einsum("hwi,hwij->hwj", mg, a)                             # (h, w, 3)
    coef = np.concatenate([a, b[..., None, :]], axis=2)                    # (h, w, 4, 3)
    return box(coef.reshape(*coef.shape[:2], 12)).reshape(coef.shape).astype(np.float32)


def _bilinear_axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices i0, i1 and weights for half-pixel-centred bilinear resampling of one axis."""
    s = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    i0 = np.floor(s).astype(np.int64)
    return i0, np.minimum(i0 + 1, n_in - 1), (s - i0).astype(np.float32)


def carry(full: np.ndarray, small_in: np.ndarray, small_out: np.ndarray, radius: int = 4, eps: float = 1e-3,
          band: int = 256) -> np.ndarray:
    """The working-size change small_in -> small_out applied to ``full`` (float (H, W, 3) in [0, 1]) as a local
    affine colour transform: the change itself is fitted (so no change carries as exactly none, and the guided
    filter's regularisation shrinks the change toward a local offset, never the photo's own texture); bands of rows
    keep the memory at a few full-width rows of coefficients."""
    coef = affine_coefficients(small_in, small_out - small_in, radius, eps)
    H, W = full.shape[:2]
    y0s, y1s, wy = _bilinear_axis(H, coef.shape[0])
    x0, x1, wx = _bilinear_axis(W, coef.shape[1])
    out = np.empty((H, W, 3), np.float32)
    wx = wx[:, None, None]
    for top in range(0, H, band):
        rows = slice(top, min(H, top + band))
        wyb = wy[rows][:, None, None, None]
        c = coef[y0s[rows]] * (1 - wyb) + coef[y1s[rows]] * wyb            # (b, w, 4, 3)
        c = c[:, x0] * (1 - wx[None]) + c[:, x1] * wx[None]                # (b, W, 4, 3)
        g = full[rows].astype(np.float32)
        out[rows] = g + np.einsum("bwi,bwij->bwj", g, c[:, :, :3]) + c[:, :, 3]
    return np.clip(out, 0, 1)


# --- one photo, end to end ---

@dataclass
class Styled:
    image: np.ndarray           # float32 (H, W, 3), full resolution
    labels: np.ndarray          # int32 (h, w) regions at the working size (0 .. M-1)
    lam: np.ndarray             # (L, M) final Λ
    seconds: float


def resize_photo(x: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """A float (h, w, 3) photo resized to hw: area averaging down, bilinear up."""
    t = torch.from_numpy(np.array(x, dtype=np.float32)).permute(2, 0, 1)[None]
    mode = "area" if hw[0] <= x.shape[0] else "bilinear"
    return F.interpolate(t, size=hw, mode=mode).clamp(0, 1)[0].permute(1, 2, 0).numpy()


def style_photo(photo: np.ndarray, reference: np.ndarray, trunk: nn.Module, config: StyleConfig = StyleConfig(),
                regions: int = 3, labels: np.ndarray | None = None, reference_labels: np.ndarray | None = None,
                progress: bool = False) -> Styled:
    """Phase 2 on a full-size float photo: both photos to the working size, regions (the given label maps, or
    :func:`enhance.regions.joint_regions`), :func:`stylize`, then :func:`carry` back to the photo's size."""
    import time

    from photos.regions import compact, joint_regions

    t0 = time.perf_counter()
    small = resize_photo(photo, working_size(photo.shape, config.size))
    ref = resize_photo(reference, working_size(reference.shape, config.size))
    if labels is not None and reference_labels is not None:
        la = np.asarray(F.interpolate(torch.from_numpy(labels)[None, None].float(), size=small.shape[:2],
                                      mode="nearest")[0, 0], dtype=np.int32)
        lb = np.asarray(F.interpolate(torch.from_numpy(reference_labels)[None, None].float(), size=ref.shape[:2],
                                      mode="nearest")[0, 0], dtype=np.int32)
        la, lb, regions = compact(la, lb)
    else:
        la, lb = joint_regions(small, ref, regions, seed=config.seed)
    result = stylize(small, ref, la, lb, regions, trunk, config, progress)
    return Styled(carry(photo, small, result.output), la, result.lam, time.perf_counter() - t0)
