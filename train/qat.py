"""Quantization-aware fine-tuning (``python -m train dped|mdie --qat``): a network trains as its int8 file computes.

The network is BatchNorm-folded as the exporters fold it and traced into PT2E's QAT graph (``quantize.tflite.
prepare_qat``): weights fake-quantized to int8 per output channel, every activation fake-quantized to int8 at the
range the export's own calibration gives it (the built-in photos, ``CALIBRATION_COUNT`` crops of
``CALIBRATION_SIZE``, the histogram observer), then frozen. The training losses see the fake-quantized output, so
the weights learn to work around their own rounding and the activations' clipping. Validation scores a copy
calibrated afresh (``QATGenerator.recalibrated``): the ranges the export will give the weights as they are.

Checkpoints hold plain float weights that ``create_model`` loads and ``python -m export`` quantizes as usual: the
folded convs go back into the network, each folded BatchNorm kept as the identity plus the folded bias
(``unfolded``), so the export's own folding gives back the trained weights.
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import models
from models.globe import thumbnail_of
from models.intrinsic import crop_like, pad_to_multiple
from models.layers import ConvBNAct, SeparableConv2d, fold_batchnorm, last_conv

from .loop import check_network_spec, network

CALIBRATION_SIZE = (512, 512)   # the export's default size and calibration: its int8 file starts from these ranges
CALIBRATION_COUNT = 4
IMAGE, THUMBNAIL = "image", "thumbnail"
QAT_STEPS, QAT_LR = 500, 1e-5   # a fine-tuning, from trained weights


def check_qat(cfg: Any, reshaping: tuple[str, ...]) -> None:
    """--qat's options, checked before any work (ValueError): it fine-tunes the --init network as it is, so none of
    the ``reshaping`` options may be given, nor --amp; --init defaults to the --model's shipped weights, and a
    checkpoint must hold a --model network."""
    changed = [f"--{k.replace('_', '-')}" for k in reshaping if getattr(cfg, k) not in (None, False)]
    if changed:
        raise ValueError(f"--qat fine-tunes the --init network as it is: drop {', '.join(changed)}")
    if cfg.amp:
        raise ValueError("--qat simulates int8 in float32: drop --amp")
    if cfg.init is None:
        cfg.init = cfg.model
    check_network_spec("--init", cfg.init)
    if cfg.init not in models.list_models():
        from models.registry import load_checkpoint

        held = load_checkpoint(cfg.init).get("model")
        if held != cfg.model:
            raise ValueError(f"--init {cfg.init} holds a {held} network, not a {cfg.model} one")


def qat_network(spec: str) -> tuple[QATGenerator, dict]:
    """The fake-quantized training graph of ``spec`` (a model name, its shipped weights, or a checkpoint), its
    activation ranges calibrated as the int8 export calibrates them; and what a checkpoint records of it."""
    from quantize.calibration import calibration_images

    images = calibration_images(None, CALIBRATION_SIZE, CALIBRATION_COUNT, progress=False)
    return QATGenerator(network(spec), images), {
        "init": spec, "qat": {"scheme": "int8 weights per output channel, int8 activations (PT2E, litert-torch's "
                                        "QAT config)", "calibration": {"source": "builtin", "count": CALIBRATION_COUNT,
                                                                       "size": list(CALIBRATION_SIZE),
                                                                       "method": "histogram"}}}


class _Keyword(nn.Module):
    """The generator with keyword inputs (the thumbnail only where the model takes one), as PT2E traces it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, thumbnail: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(image) if thumbnail is None else self.model(image, thumbnail)


class QATGenerator(nn.Module):
    """A photo enhancer's fake-quantized training graph, called as the generator is in ``train.dped``.

    ``float_network()`` is the float network with the trained weights, for checkpoints. Train and eval modes are the
    same (BatchNorm is folded, nothing else depends on the mode): the graph's observers decide what updates."""

    def __init__(self, model: nn.Module, calibration: list[np.ndarray]):
        super().__init__()
        from models.contract import thumbnail_size
        from quantize.calibration import model_inputs
        from quantize.tflite import prepare_qat

        self._float = [copy.deepcopy(model).cpu().eval()]   # a list: not a submodule, not in state_dict
        self.thumbnail = thumbnail_size(model)
        self.contract = model.contract
        self._feeds = feeds = [dict(zip((IMAGE, THUMBNAIL), a)) for a in model_inputs(calibration, self.thumbnail)]
        example = {k: torch.cat([v, v]) for k, v in feeds[0].items()}   # a batch of 1 would pin the batch size
        self.graph, _ = prepare_qat(_Keyword(fold_batchnorm(self._float[0])), example, feeds, dynamic_hw=(IMAGE,),
                                    multiple=model.contract.size_multiple, channels_first=True, dynamic_batch=True)

    def recalibrated(self) -> QATGenerator:
        """A copy whose activation ranges are set afresh from the current weights, as the int8 export will
        calibrate them (the same crops and observer). The training loops validate it: its scores, and so
        ``best.pt``, are those of the ranges the file will have. Training itself stays at the ranges it started
        from."""
        from quantize.tflite import calibrate_activations

        shared = {id(self._float): self._float, id(self._feeds): self._feeds}   # read only: not copied each time
        out = copy.deepcopy(self, shared)
        device = next(out.graph.parameters()).device
        calibrate_activations(out.graph, [{k: v.to(device) for k, v in f.items()} for f in out._feeds])
        return out

    def train(self, mode: bool = True) -> QATGenerator:
        self.training = mode   # an exported graph refuses train()/eval(); folded, it has no mode to switch
        return self

    def forward(self, x: torch.Tensor, thumbnail: torch.Tensor | None = None, with_global: bool = False):
        if self.thumbnail and thumbnail is None:   # x is the whole photo: its own thumbnail, as the model takes it
            thumbnail = thumbnail_of(x, self.thumbnail)
        image = _graph_sized(x, self.contract.size_multiple)
        out = self.graph(image=image, thumbnail=thumbnail) if self.thumbnail else self.graph(image=image)
        out = crop_like(out, x)
        return (out, None) if with_global else out

    def float_network(self) -> nn.Module:
        """The float network (unfolded structure, CPU) computing what the graph's weights compute without
        quantization."""
        folded = fold_batchnorm(self._float[0])
        trained = {k.removeprefix("model."): v.detach().cpu() for k, v in self.graph.state_dict().items()
                   if k.startswith("model.")}
        own = folded.state_dict()
        missing = [k for k in own if k not in trained]
        if missing:
            raise RuntimeError(f"QAT graph lacks the network's tensors {missing[:3]}")
        folded.load_state_dict({k: trained[k] for k in own})
        return unfolded(self._float[0], folded)


def _graph_sized(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """``x`` edge-padded at the bottom and right to the sizes the graph takes: multiples of the model's, at least
    two of them (a model with a size multiple pads so itself; past one multiple, the graph computes what it does)."""
    if multiple == 1:
        return x
    x = pad_to_multiple(x, multiple)
    short = [max(0, 2 * multiple - s) for s in x.shape[-2:]]
    return F.pad(x, (0, short[1], 0, short[0]), mode="replicate") if any(short) else x


@torch.no_grad()
def unfolded(model: nn.Module, folded: nn.Module) -> nn.Module:
    """A copy of ``model`` (with BatchNorms) that computes what ``folded`` (``fold_batchnorm`` of it, retrained)
    does, in eval mode: each folded conv's weights go back into the conv, its bias into the BatchNorm, whose
    statistics become the identity (mean 0, variance 1 - eps); ``fold_batchnorm`` of the result gives ``folded``'s
    weights back."""
    out = copy.deepcopy(model).eval()
    mine, theirs = dict(out.named_modules()), dict(folded.named_modules())
    for name, module in mine.items():
        if not isinstance(module, ConvBNAct):
            continue
        if not isinstance(module.bn, nn.BatchNorm2d):
            module.load_state_dict(theirs[name].state_dict())
            continue
        conv, fused = last_conv(module.conv), last_conv(theirs[name].conv)
        if isinstance(module.conv, SeparableConv2d):
            module.conv.depthwise.load_state_dict(theirs[name].conv.depthwise.state_dict())
        module.act.load_state_dict(theirs[name].act.state_dict())   # a learned activation, if any
        conv.weight.copy_(fused.weight)
        if conv.bias is not None:
            conv.bias.zero_()
        bn = module.bn
        bn.weight.fill_(1.0)
        bn.bias.copy_(fused.bias)
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)
    rest = {k: v for k, v in folded.state_dict().items() if not _in_conv_bn(k, mine)}
    out.load_state_dict(rest, strict=False)
    return out


def _in_conv_bn(key: str, modules: dict[str, nn.Module]) -> bool:
    parts = key.split(".")
    return any(isinstance(modules.get(".".join(parts[:i])), ConvBNAct) for i in range(len(parts)))
