"""Weight-side methods applied to the BatchNorm-folded float model before int8 quantization (any target).

- ``cle``: cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization"). For two convolutions in a row
  with a positively homogeneous activation between them (identity inside a depthwise-separable pair, ReLU or
  LeakyReLU between layers), output channel i of the first and input channel i of the second are rescaled by
  1/s_i and s_i with s_i = sqrt(r1_i / r2_i) (r: the channel's largest absolute weight), so that both reach the
  same range. The float function is unchanged; the weight ranges per channel and the activation ranges between the
  two convolutions change. Applied in rounds until the scales settle, since one conv can be in two pairs.
  (Written here: aimet-torch, which has it, would replace the pinned torch 2.13 with its own; the algorithm is a
  few lines.)
- ``smoothquant``: SmoothQuant's scaling (Xiao et al. 2023), here over the same conv pairs. Where CLE evens the
  weight ranges, this evens the activation ranges between the two convs, which both targets quantize per tensor:
  channel i of the activation is divided by s_i and input channel i of the second conv multiplied by it, with
  s_i = a_i^alpha / r2_i^(1 - alpha) (a: the channel's largest absolute activation on the calibration images,
  r2: the second conv's largest absolute weight on that input channel), normalised so that the largest s_i is 1.
  ``SMOOTH_ALPHA`` = 0.25 was chosen by the export gate on the shipped models (README); 0.5, SmoothQuant's value
  for transformers, lost 5 to 7 dB on ``dped``, whose second convs' weights are quantized per output channel and
  lose their small input columns when a few channels are scaled up. The float function is unchanged.
- ``adaround``: AdaRound (Nagel et al. 2020, "Up or Down?"). Each conv's int8 rounding (up or down per weight,
  on the per-channel symmetric grid the converters use) is learned to reproduce the float conv's output on its
  own input from the calibration images, instead of rounding to nearest: a rectified-sigmoid relaxation, the
  output's relative squared error plus ``REG`` times the mean rounding regulariser (beta annealed from 20 to 2
  after a 20 % warm start, as AIMET does), ``ADAROUND_STEPS`` Adam steps per conv on random ``ADAROUND_PATCH``
  px patches. ``REG`` 1e-3 was chosen on a test conv: 1e-2 left 94 % of round-to-nearest's error, 1e-3 88 %,
  1e-4 103 % (the rounding was not yet decided when it was forced). The float weights are replaced by the rounded
  ones, so that the converter's round-to-nearest reproduces exactly the learned integers.
- ``bias-correction``: empirical bias correction of the weight quantization error (Nagel et al. 2019, section 4.2,
  with the input mean measured on the calibration images). For each conv, the error of its per-channel symmetric
  int8 weights, times the mean of its input per channel, is the mean shift the int8 weights add to each output
  channel; it is subtracted from the bias. A depthwise conv (no bias) passes its correction through the pointwise
  conv that follows it.

The pairs are found from the module structure alone (``pairs``): the two convs of each ``SeparableConv2d``, and
consecutive ``ConvBNAct`` modules in an ``nn.Sequential`` (a Sequential's intermediate outputs go nowhere else),
plus the declared ``equalizable`` pairs of a model (DPED's last tail layer and its output layer). A conv whose
output joins a residual sum, a concatenation or a FiLM modulation is never scaled.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from models.layers import ConvBNAct, SeparableConv2d

METHODS = ("cle", "smoothquant", "adaround", "bias-correction")
QMAX = 127   # PT2E's per-channel symmetric int8 weights (each target's is its weight_qmax in artifacts.targets)
HOMOGENEOUS = (nn.Identity, nn.ReLU, nn.LeakyReLU)   # f(s x) = s f(x) for s > 0
ROUNDS = 100       # at most; stops when no scale moves by more than 1e-4 (dped_mobile: about 50 rounds)
SMOOTH_ALPHA = 0.25  # smoothquant: how much of each activation channel's range moves into the weights


def _first_conv(module: nn.Module) -> nn.Conv2d | None:
    conv = module.conv if isinstance(module, ConvBNAct) else module
    conv = conv.depthwise if isinstance(conv, SeparableConv2d) else conv
    return conv if type(conv) is nn.Conv2d else None


def _last_conv(module: nn.Module) -> nn.Conv2d | None:
    conv = module.conv if isinstance(module, ConvBNAct) else module
    conv = conv.pointwise if isinstance(conv, SeparableConv2d) else conv
    return conv if type(conv) is nn.Conv2d else None


def _linear_after(module: ConvBNAct) -> bool:
    return isinstance(module.bn, nn.Identity) and isinstance(module.act, HOMOGENEOUS)


def pairs(model: nn.Module) -> list[tuple[nn.Conv2d, nn.Conv2d]]:
    """(conv1, conv2) pairs whose channels between them CLE may rescale, in module order (BN must be folded)."""
    found: list[tuple[nn.Conv2d, nn.Conv2d]] = []
    for module in model.modules():
        if isinstance(module, SeparableConv2d):
            found.append((module.depthwise, module.pointwise))
        if isinstance(module, nn.Sequential) and not isinstance(module, (ConvBNAct, SeparableConv2d)):
            children = list(module.children())
            for a, b in zip(children, children[1:]):
                if isinstance(a, ConvBNAct) and isinstance(b, ConvBNAct) and _linear_after(a):
                    found.append((_last_conv(a), _first_conv(b)))
    for a, b in getattr(model, "equalizable", lambda: [])():
        if isinstance(a, ConvBNAct) and _linear_after(a):
            found.append((_last_conv(a), _first_conv(b)))
    return [(a, b) for a, b in found if a is not None and b is not None and a.out_channels == b.in_channels]


def _input_ranges(conv: nn.Conv2d) -> torch.Tensor:
    """Largest |w| per input channel (a depthwise conv: per channel, its own filter)."""
    w = conv.weight.detach().abs()
    if conv.groups == conv.in_channels and conv.groups > 1:
        return w.flatten(1).amax(1)
    return w.transpose(0, 1).flatten(1).amax(1)


@torch.no_grad()
def equalize(model: nn.Module) -> int:
    """Cross-layer equalization in place; returns the number of pairs equalized."""
    found = pairs(model)
    for _ in range(ROUNDS):
        moved = 0.0
        for a, b in found:
            r1 = a.weight.abs().flatten(1).amax(1)
            r2 = _input_ranges(b)
            s = torch.sqrt(r1 / r2.clamp_min(1e-12)).where((r1 > 0) & (r2 > 0), torch.ones_like(r1))
            moved = max(moved, float(s.log().abs().max()))
            _scale_pair(a, b, s)
        if moved < 1e-4:
            break
    return len(found)


def _scale_pair(a: nn.Conv2d, b: nn.Conv2d, s: torch.Tensor) -> None:
    """Channel i between ``a`` and ``b`` divided by ``s[i]`` after ``a`` and multiplied back in ``b``: the same
    function through a positively homogeneous activation."""
    a.weight.div_(s.view(-1, 1, 1, 1))
    if a.bias is not None:
        a.bias.div_(s)
    b.weight.mul_(s.view(-1, 1, 1, 1) if b.groups == b.in_channels and b.groups > 1 else s.view(1, -1, 1, 1))


@torch.no_grad()
def smooth(model: nn.Module, feeds: list[tuple], alpha: float = SMOOTH_ALPHA) -> int:
    """SmoothQuant's scaling in place over ``pairs(model)``, from the activation ranges on ``feeds`` (positional
    inputs of the calibration images); returns the number of pairs found. Scaling one pair leaves every other
    pair's activation as it was (only the tensor between the two convs changes), so all ranges are measured once."""
    found = pairs(model)
    ranges = {b: torch.stack(seen).amax(0) for b, seen in
              _inputs_seen(model, [b for _, b in found], feeds, keep=lambda x: x.abs().amax((0, 2, 3))).items()}
    for a, b in found:
        if b not in ranges:  # never called on these inputs
            continue
        s = ranges[b].clamp_min(1e-6) ** alpha / _input_ranges(b).clamp_min(1e-12) ** (1 - alpha)
        _scale_pair(a, b, s / s.max())
    return len(found)


def int8_scale(weight: torch.Tensor, qmax: int = QMAX) -> torch.Tensor:
    """The per-output-channel symmetric step of conv weights on integers in [-qmax, qmax] (PT2E: 127; onnxruntime
    with 7-bit weights: 64), shaped to broadcast over ``weight``."""
    return (weight.abs().flatten(1).amax(1).clamp_min(1e-12) / qmax).view((-1,) + (1,) * (weight.dim() - 1))


def fake_int8(weight: torch.Tensor, qmax: int = QMAX) -> torch.Tensor:
    """``weight`` rounded to nearest on its integer grid (``int8_scale``)."""
    scale = int8_scale(weight, qmax)
    return (weight / scale).round().clamp(-qmax, qmax) * scale


ZETA, GAMMA = 1.1, -0.1          # the rectified sigmoid's stretch (AdaRound)
ADAROUND_STEPS = 400
REG = 1e-3                       # weight of the rounding regulariser (mean over weights; the loss is relative)
ADAROUND_PATCH = 32
ADAROUND_CROP = 96               # calibration crops the conv inputs are recorded on


def _rectified_sigmoid(v: torch.Tensor) -> torch.Tensor:
    return (torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA).clamp(0, 1)


def _inputs_seen(model: nn.Module, convs: list[nn.Conv2d], feeds: list[tuple], keep=lambda x: x
                 ) -> dict[nn.Conv2d, list[torch.Tensor]]:
    """``keep(input)`` of each conv at each of its calls while ``model`` runs on ``feeds`` (convs never called are
    left out)."""
    seen: dict[nn.Conv2d, list[torch.Tensor]] = {c: [] for c in convs}
    handles = [c.register_forward_hook(lambda mod, inputs, _out: seen[mod].append(keep(inputs[0].detach())))
               for c in convs]
    try:
        with torch.no_grad():
            for args in feeds:
                model(*args)
    finally:
        for h in handles:
            h.remove()
    return {c: xs for c, xs in seen.items() if xs}


def _conv_inputs(model: nn.Module, convs: list[nn.Conv2d], feeds: list[tuple]) -> dict[nn.Conv2d, torch.Tensor]:
    """Each conv's input on ``feeds``, concatenated over them (N, C, H, W)."""
    return {c: torch.cat(xs) for c, xs in _inputs_seen(model, convs, feeds).items()
            if all(x.shape[1:] == xs[0].shape[1:] for x in xs)}


def adaround_weight(conv: nn.Conv2d, x: torch.Tensor, steps: int = ADAROUND_STEPS, seed: int = 0,
                    qmax: int = QMAX) -> torch.Tensor:
    """The conv's weight on its integer grid ([-qmax, qmax]), with the rounding learned on its input ``x``
    (N, C, H, W)."""
    w = conv.weight.detach()
    scale = int8_scale(w, qmax)
    floor = torch.floor(w / scale)
    rest = (w / scale - floor).clamp(1e-4, 1 - 1e-4)
    v = (-torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1)).requires_grad_(True)   # h(v) = rest at the start
    opt = torch.optim.Adam([v], lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    run = lambda inp, weight: nn.functional.conv2d(inp, weight, conv.bias, conv.stride, conv.padding,  # noqa: E731
                                                   conv.dilation, conv.groups)
    patch = min(ADAROUND_PATCH, x.shape[2], x.shape[3])
    warm = steps // 5
    for step in range(steps):
        n = torch.randint(0, x.shape[0], (4,), generator=gen)
        i = int(torch.randint(0, x.shape[2] - patch + 1, (1,), generator=gen))
        j = int(torch.randint(0, x.shape[3] - patch + 1, (1,), generator=gen))
        xb = x[n, :, i:i + patch, j:j + patch]
        with torch.no_grad():
            target = run(xb, w)
        h = _rectified_sigmoid(v)
        out = run(xb, (floor + h).clamp(-qmax, qmax) * scale)
        loss = (out - target).pow(2).mean() / target.pow(2).mean().clamp_min(1e-12)   # relative error
        if step >= warm:
            beta = 20 - (20 - 2) * (step - warm) / max(steps - warm, 1)
            loss = loss + REG * (1 - (2 * h - 1).abs().pow(beta)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        q = (floor + (_rectified_sigmoid(v) >= 0.5).float()).clamp(-qmax, qmax)
        # keep each channel's largest weight at +-qmax, so that the converter finds the same scale
        flat, rtn = q.flatten(1), torch.round(w / scale).flatten(1)
        top = w.abs().flatten(1).argmax(1)
        flat[torch.arange(flat.shape[0]), top] = rtn[torch.arange(flat.shape[0]), top]
        return flat.view_as(w) * scale


def adaround(model: nn.Module, feeds: list[tuple], steps: int = ADAROUND_STEPS, qmax: int = QMAX
             ) -> dict[nn.Conv2d, torch.Tensor]:
    """{conv: its AdaRound integer-grid weight} for every plain or depthwise conv of ``model`` (not written)."""
    convs = [m for m in model.modules() if type(m) is nn.Conv2d]
    inputs = _conv_inputs(model, convs, feeds)
    return {conv: adaround_weight(conv, inputs[conv], steps, qmax=qmax) for conv in convs if conv in inputs}


def _mean_inputs(model: nn.Module, convs: list[nn.Conv2d], feeds: list[tuple]) -> dict[nn.Conv2d, torch.Tensor]:
    """Each conv's mean input per channel on ``feeds`` (the mean of each call's mean)."""
    seen = _inputs_seen(model, convs, feeds, keep=lambda x: x.mean(dim=(0, 2, 3)))
    return {c: torch.stack(means).mean(0) for c, means in seen.items()}


@torch.no_grad()
def correct_bias(model: nn.Module, feeds: list[tuple], quantized: dict[nn.Conv2d, torch.Tensor] | None = None,
                 qmax: int = QMAX) -> int:
    """Empirical bias correction in place (``feeds``: positional inputs of the calibration images); returns the
    number of convs corrected. ``quantized``: the integer-grid weights the convs will have (default: rounded to
    nearest on [-qmax, qmax])."""
    convs = [m for m in model.modules() if type(m) is nn.Conv2d]
    means = _mean_inputs(model, convs, feeds)
    following = {m.depthwise: m.pointwise for m in model.modules() if isinstance(m, SeparableConv2d)}
    corrected = 0
    for conv in convs:
        if conv not in means:
            continue
        rounded = quantized[conv] if quantized and conv in quantized else fake_int8(conv.weight, qmax)
        error = rounded - conv.weight                            # (out, in/groups, k, k)
        if conv.groups == conv.in_channels and conv.groups > 1:
            shift = error.flatten(1).sum(1) * means[conv]        # per channel
        elif conv.groups == 1:
            shift = error.sum(dim=(2, 3)) @ means[conv]          # (out,)
        else:
            continue
        target = conv
        if conv.bias is None:
            target = following.get(conv)
            if target is None or target.bias is None:
                continue
            shift = target.weight.flatten(1) @ shift              # the depthwise shift through the 1x1 conv
        target.bias.sub_(shift)
        corrected += 1
    return corrected


@torch.no_grad()
def _check_same_function(model: nn.Module, rescaled: nn.Module, feed: tuple, method: str) -> None:
    """A rescaling method must leave the float output as it was: a structure that defeats ``pairs`` shows here."""
    before, after = model.eval()(*feed), rescaled(*feed)
    as_tuple = lambda out: out if isinstance(out, tuple) else (out,)  # noqa: E731
    for b, a in zip(as_tuple(before), as_tuple(after)):
        if (b - a).abs().max() > 1e-3:
            raise ValueError(f"{method} changed {type(model).__name__}'s output: a conv's output is used beyond the "
                             "pair it was rescaled in")


def apply(model: nn.Module, methods: tuple[str, ...], calibration: list[np.ndarray], thumbnail_size: int = 0,
          qmax: int = QMAX) -> nn.Module:
    """A copy of the BN-folded float ``model`` with ``methods`` applied in the order of ``METHODS``.
    ``calibration``: float32 (H, W, 3) images (an image-adaptive model gets each image's own thumbnail);
    ``qmax``: the target's weight integers lie in [-qmax, qmax] (the precision's ``weight_qmax`` in artifacts.targets)."""
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown weight method {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    from .calibration import model_inputs

    feeds = model_inputs(calibration, thumbnail_size)
    out = copy.deepcopy(model).eval()
    if "cle" in methods:
        equalize(out)
        _check_same_function(model, out, feeds[0], "cross-layer equalization")
    if "smoothquant" in methods:
        smooth(out, feeds)
        _check_same_function(model, out, feeds[0], "smoothquant")
    rounded = None
    if "adaround" in methods:  # on crops: each conv's input is recorded whole
        crops = [*model_inputs(calibration, thumbnail_size, (slice(None, ADAROUND_CROP),) * 2),
                 *model_inputs(calibration, thumbnail_size, (slice(-ADAROUND_CROP, None),) * 2)]
        rounded = adaround(out, crops, qmax=qmax)
    if "bias-correction" in methods:
        correct_bias(out, feeds, rounded, qmax)
    if rounded:
        with torch.no_grad():
            for conv, weight in rounded.items():
                conv.weight.copy_(weight)
    return out
