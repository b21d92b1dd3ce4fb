"""Per-layer int8 sensitivity of the TFLite recipe: PT2E with our quantizer (``quantize.tflite``), run in PyTorch.

A TFLite trial cannot re-quantize a file in seconds as onnxruntime does: each int8 conversion is a PT2E
calibration and a litert-torch conversion of about a minute. So the network is calibrated once, converted to
PT2E's reference graph (every quantized tensor a quantize/dequantize pair, in float arithmetic: what the int8
kernels compute, up to their rounding), and each trial removes pairs from that graph and runs it on the held-out
photos. A layer is an op that takes quantized inputs, named as ``--float-layers`` names it (``in_layer``):

- **only**: the layer's own inputs (activations and weights) quantized, every other pair removed;
- **except** (``float_layers``): what ``--float-layers`` builds: the layer and everything computed from it in
  float (the converter makes a float op int8 again when a QUANTIZE follows it), the rest int8. A float op's
  input from an int8 op stays quantized: it is that op's int8 output.

The export gate still measures the converted file: ``python -m export --fidelity-target`` chooses the layers
here, then converts and gates the result.
"""
from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from artifacts.fidelity import psnr

from . import tflite as recipes

_Q = ("quantize_per_tensor", "quantize_per_channel")
_DQ = ("dequantize_per_tensor", "dequantize_per_channel")
SCAN = 16  # choices, fewest floated layers first, measured before bisection (choose_float_suffix)


def _is(node, names: tuple[str, ...]) -> bool:
    return node.op == "call_function" and getattr(node.target, "__name__", "").split(".")[0] in names


@dataclass
class PT2ETrials:
    """Quantization trials of ``module`` (the network as the TFLite export converts it: NHWC, keyword inputs):
    ``fidelity(float_layers, only)`` -> worst PSNR (dB) against the float module on ``inputs``."""

    module: nn.Module
    calibration: list[dict[str, torch.Tensor]]
    inputs: list[tuple[str, dict[str, torch.Tensor]]]
    method: str = "histogram"
    source: str = ""
    quantizer: str = "PT2E int8 (the TFLite recipe), quantize/dequantize pairs run in PyTorch"
    layers: list[str] = field(init=False)
    count: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        from torchao.quantization.pt2e import quantize_pt2e

        with torch.no_grad():
            self._reference = [self.module(**kwargs) for _, kwargs in self.inputs]
        prepared, _ = recipes.calibrated(self.module, self.calibration[0], self.calibration, self.method)
        self._observed = {n.args[0].name: getattr(prepared, n.target) for n in prepared.graph.nodes
                          if n.op == "call_module" and hasattr(getattr(prepared, n.target), "min_val")
                          and n.args[0].op != "get_attr"}
        self._observed = {k: (float(o.min_val), float(o.max_val)) for k, o in self._observed.items()
                          if o.min_val.numel() == 1}
        self.graph = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
        self._layers: dict[str, list[str]] = {}   # layer -> its nodes (names) that take dequantized inputs
        for node in self.graph.graph.nodes:
            name = recipes.layer_name(node) if not _is(node, _Q + _DQ) else None
            if name is not None and any(_is(a, _DQ) for a in node.all_input_nodes):
                self._layers.setdefault(name, []).append(node.name)
        self.layers = list(self._layers)

    def use_reference(self, outputs: list[dict[str, torch.Tensor]]) -> None:
        """Score trials against these outputs ({name: NHWC tensor} per input) instead of the float module's."""
        if len(outputs) != len(self.inputs) or any(set(o) != set(r) for o, r in zip(outputs, self._reference)):
            raise ValueError("a reference output per input, named as the module's outputs")
        self._reference = outputs

    def fidelity(self, float_layers: tuple[str, ...] | list[str] = (), only: tuple[str, ...] | None = None) -> float:
        graph = copy.deepcopy(self.graph)
        nodes = {n.name: n for n in graph.graph.nodes}
        if only is not None:
            keep = self._nodes(graph, only)
            drop = [d for d in nodes.values() if _is(d, _DQ) and not set(d.users) <= keep]
        else:
            floated = self._floated(graph, float_layers)
            drop = [d for d in nodes.values() if _is(d, _DQ) and set(d.users) & floated
                    and not self._int8_output(d.args[0].args[0], floated)]
        for d in drop:
            d.replace_all_uses_with(d.args[0].args[0])
        graph.graph.eliminate_dead_code()
        graph.recompile()
        with torch.no_grad():
            outputs = [graph(**kwargs) for _, kwargs in self.inputs]
        self.count += 1
        return min(psnr(out[k].numpy(), ref[k].numpy()) for out, ref in zip(outputs, self._reference) for k in ref)

    def floated_layers(self, float_layers: tuple[str, ...] | list[str]) -> list[str]:
        """The layers that run in float when ``float_layers`` do: they and every layer computed from them."""
        floated = {n.name for n in self._floated(self.graph, float_layers)}
        return [layer for layer, names in self._layers.items() if floated.intersection(names)]

    def _floated(self, graph, float_layers) -> set:
        """The ops of ``float_layers``, every op computed from them (topological order), and the ops feeding a
        float concat (``recipes.CONCATS``)."""
        floated = self._nodes(graph, float_layers)
        feeders = set()
        for node in graph.graph.nodes:
            if node.op == "call_function" and not _is(node, _Q + _DQ) and any(
                    a in floated or (_is(a, _DQ) and a.args[0].args[0] in floated) for a in node.all_input_nodes):
                floated.add(node)
            if node in floated and node.target in recipes.CONCATS:
                sources = [a.args[0].args[0] if _is(a, _DQ) else a for a in node.all_input_nodes]
                feeders.update(a for a in sources if a.op == "call_function" and not _is(a, _Q + _DQ))
        return floated | feeders

    @staticmethod
    def _nodes(graph, layers) -> set:
        """The ops of ``layers`` (``in_layer`` names); a name that matches none is an error, as in the export."""
        found = {layer: {n for n in graph.graph.nodes if recipes.in_layer(n, layer)} for layer in layers}
        unknown = [layer for layer, nodes in found.items() if not nodes]
        if unknown:
            raise ValueError(f"--float-layers {','.join(unknown)}: no such layer in this model")
        return set().union(*found.values())

    @staticmethod
    def _int8_output(producer, floated: set) -> bool:
        """Whether ``producer``'s output is quantized by the producer itself: an int8 op (it takes quantized
        inputs) that is not floated. Weights, the image and float ops' outputs are quantized only for their
        consumer."""
        return (producer.op == "call_function" and producer not in floated
                and any(_is(a, _DQ) for a in producer.all_input_nodes))

    def op_types(self) -> dict[str, str]:
        """Each layer's op: Conv, ConvTranspose or Linear for a weighted layer, else its ``module:Op`` suffix."""
        nodes = {n.name: n for n in self.graph.graph.nodes}
        weighted = {"conv2d": "Conv", "conv_transpose2d": "ConvTranspose", "linear": "Linear"}
        return {layer: layer.rpartition(":")[2] if ":" in layer else weighted[recipes.aten_op(nodes[names[0]])]
                for layer, names in self._layers.items()}

    def ranges(self) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
        """(weight ranges, activation ranges) per layer, as ``quantize.sensitivity`` reports them: each weighted
        layer's smallest and largest per-output-channel max |w|; the observed extremes of each layer's first
        quantized input and of its output."""
        weights, acts = {}, {}
        nodes = {n.name: n for n in self.graph.graph.nodes}
        for layer, names in self._layers.items():
            node = nodes[names[0]]
            dq_inputs = [a for a in node.all_input_nodes if _is(a, _DQ)]
            row = {}
            for side, tensor in (("input", dq_inputs[0].args[0].args[0].name if dq_inputs else None),
                                 ("output", node.name)):
                if tensor in self._observed:
                    row[f"{side}_min"], row[f"{side}_max"] = self._observed[tensor]
            acts[layer] = row
            for a in dq_inputs:
                source = a.args[0].args[0]
                if source.op == "get_attr" and _is(a, ("dequantize_per_channel",)):
                    w = functools.reduce(getattr, source.target.split("."), self.graph).detach()
                    w = w.transpose(0, 1) if node.target is torch.ops.aten.conv_transpose2d.input else w
                    per_channel = w.reshape(w.shape[0], -1).abs().amax(dim=1)
                    lo, hi = float(per_channel.min()), float(per_channel.max())
                    weights[layer] = {"channel_absmax_min": lo, "channel_absmax_max": hi,
                                      "channel_ratio": hi / lo if lo > 0 else float("inf")}
                    break
        return weights, acts

    def close(self) -> None:
        pass


def _aim(target_db: float, converted_db: float, simulated_db: float) -> float:
    """The simulated fidelity that the converted file's ``target_db`` corresponds to, given both all-int8 figures."""
    return target_db - (converted_db - simulated_db)


def choose_float_suffix(trials: PT2ETrials, target_db: float, progress: Callable[[str], None] | None = None,
                        converted_db: float | None = None, scan: int = SCAN) -> tuple[list[str], float, list[dict]]:
    """The one layer to float, with everything computed from it, so that the int8 file reaches ``target_db`` with
    as little of the network in float as the trials find. First the ``scan`` choices that float the fewest layers,
    fewest first (the latest in the network's order first among equals); the first that reaches the target is the
    answer. Then, if none did, bisection over the network's order (floating an earlier layer floats more of the
    network: fidelity rises toward the start, though not strictly). Returns ([layer] or [], fidelity reached, the
    steps).

    ``converted_db``, the fidelity of the converted all-int8 file on the same inputs, moves the simulation's target
    by the simulation's offset from it: the converter's kernels round otherwise than PT2E's graph in PyTorch
    (``dped_mobile``: 44.34 dB simulated, 44.53 dB converted), and a target met by the file needs no more float.

    Not the ONNX search's "most sensitive first": on TFLite a float layer floats the rest of the network after
    it, so floating the most sensitive tensor (in ``dped_mobile``, the global branch's last linear layer, which
    modulates the whole trunk) would float nearly all of it."""
    say = progress or (lambda _: None)
    layers = trials.layers
    scores: dict[int, float] = {}
    steps = []

    def score(i: int) -> float:
        if i not in scores:
            scores[i] = trials.fidelity(float_layers=[layers[i]] if i < len(layers) else [])
            steps.append({"float_layers": [layers[i]] if i < len(layers) else [], "fidelity_db": round(scores[i], 2)})
            what = "all layers int8" if i == len(layers) else \
                f"{layers[i]} and what follows it in float ({len(trials.floated_layers([layers[i]]))} of " \
                f"{len(layers)} layers)"
            say(f"{what}: {scores[i]:.2f} dB (target {target_db:.2f} dB)")
        return scores[i]

    if converted_db is not None:
        score(len(layers))
        target_db = _aim(target_db, converted_db, steps[0]["fidelity_db"])
        say(f"the converted all-int8 file measures {converted_db - steps[0]['fidelity_db']:+.2f} dB from the "
            f"simulation: aiming at {target_db:.2f} dB simulated")
    if score(len(layers)) >= target_db:
        return [], scores[len(layers)], steps
    for i in sorted(range(len(layers)), key=lambda i: (len(trials.floated_layers([layers[i]])), -i))[:scan]:
        if score(i) >= target_db:
            return [layers[i]], scores[i], steps
    if score(0) < target_db:  # even the whole network after its first quantized layer in float falls short
        return [layers[0]], scores[0], steps
    good, bad = 0, len(layers)  # score(good) reaches the target, score(bad) does not
    while bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if score(mid) >= target_db else (good, mid)
    return [layers[good]], scores[good], steps


def float_suffix_candidates(trials: PT2ETrials, target_db: float, progress: Callable[[str], None] | None = None,
                            limit: int = 3, converted_db: float | None = None) -> list[list[str]]:
    """``--float-layers`` choices to convert in turn until the converted file reaches ``target_db``: the one
    ``choose_float_suffix`` found, then the other layers it measured above the target, fewest floated first, and
    last the network's first layer (all of it in float but its input), at most ``limit`` in all. The simulation
    runs PT2E's graph in PyTorch; the converter may still build something else (before ``recipes.CONCATS``,
    ``mdie``'s choice measured 45.8 dB simulated and 43.7 dB converted), so the export gates each converted file
    and moves on only when it falls short."""
    layers, _, steps = choose_float_suffix(trials, target_db, progress, converted_db)
    if not layers:
        return [[]]
    aim = target_db if converted_db is None else _aim(target_db, converted_db, steps[0]["fidelity_db"])
    order = {name: i for i, name in enumerate(trials.layers)}
    reaching = sorted((s["float_layers"] for s in steps if s["float_layers"] and s["fidelity_db"] >= aim),
                      key=lambda fl: (len(trials.floated_layers(fl)), -order[fl[0]]))[:limit] or [layers]
    last = [trials.layers[0]]  # the last resort, measured or not: all but the first quantized layer in float
    return reaching if last in reaching else reaching[:limit - 1] + [last]
