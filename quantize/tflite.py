"""TFLite quantization recipes.

- int8 (full-integer static): PT2E through litert-torch on the PyTorch graph, symmetric int8 with per-channel
  weights, activations calibrated on ``calibration_images``; float32 I/O (QUANTIZE/DEQUANTIZE at the ends).
- fp16 (fp16 weights, float compute) and dynamic-int8 (int8 weights, float activations): ai-edge-quantizer on an
  existing float .tflite; no calibration needed.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


METHODS = ("histogram", "minmax")  # PT2E activation observers: HistogramObserver (L2-optimal range), MinMaxObserver


# Element-wise ops that litert-torch 0.10's quantizer leaves in float when their inputs come from ops it does not
# annotate (a LeakyReLU feeding a residual add, the adds themselves): each took a DEQUANTIZE and a QUANTIZE around
# a float op. Annotated here with the activation spec, the network stays int8 from its input to its output clip.
# The clip itself (sub, relu) stays float after the one DEQUANTIZE: in int8, XNNPACK refuses its SUB and the file
# is no longer fully delegated (measured with CompiledModel.is_fully_accelerated).
ELEMENTWISE = ("leaky_relu.default", "add.Tensor")   # on same-shaped tensors

# Ops kept in float: XNNPACK takes their float forms but not their int8 ones (MAXIMUM, MINIMUM, EXP), and one int8
# op it refuses splits the graph, so that LiteRT's CompiledModel no longer reports it fully accelerated. The
# converter makes such an op int8 when a QUANTIZE follows it (and a clamp, a same-scale op, when its input is
# int8), so everything computed from them is left unannotated too: the chain runs in float after a DEQUANTIZE. The
# intrinsic decomposer's albedo, I * min(1 + exp(-z), 1e3) * clamp(exp(r), e^-4, e^4), is where they occur.
FLOAT_OPS = ("clamp.default", "clamp.Tensor", "clamp_min.default", "clamp_max.default", "exp.default",
             "maximum.default", "minimum.default")

# Modules kept in float, with everything computed from them, whatever --float-layers says: DPED+'s output smoothing
# (models.layers.Smoothing) follows the output clip, which runs in float already (ELEMENTWISE above), and XNNPACK
# does not take an int8 AVERAGE_POOL_2D.
FLOAT_MODULES = ("Smoothing",)

# A float layer's concat must take no int8 input: the converter makes a concat with one int8 input int8, and
# quantizes its float inputs with that input's scale (measured on mdie's U-Net: its float decoder output clipped to
# the int8 skip's range, 42.7 dB against 46.7 simulated). So the ops feeding it are floated too.
CONCATS = (torch.ops.aten.cat.default,)


def _same_shapes(node) -> bool:
    """Every tensor input has the output's shape: a plain element-wise op. A broadcast of per-photo parameters (the
    global branch's curves, sliced from one vector whose slices must share its scale) stays as litert-torch has it."""
    shape = getattr(node.meta.get("val"), "shape", None)
    args = [a for a in node.args[:2] if isinstance(a, torch.fx.Node)]
    return shape is not None and all(getattr(a.meta.get("val"), "shape", None) == shape for a in args)


WRAPPER = "model"  # the attribute under which export.tflite.NHWCEnhancer holds the network


def in_layer(node, layer: str) -> bool:
    """Whether an exported graph's node belongs to ``layer``, named as ``quantize.onnx.layer_of`` names the ONNX
    nodes: a PyTorch module path (``out.conv``, ``tail.1``: every op inside it), or ``module:Op`` for the ops of
    one kind directly in that module (``tail.1.act:LeakyRelu``, ``blocks.0:Add``)."""
    path = _module_path(node)
    if path is None:
        return False
    module, _, kind = layer.partition(":")
    if kind:
        return path == module and aten_op(node).replace("_", "").lower().startswith(kind.lower())
    return path == module or path.startswith(module + ".")


WEIGHTED = ("conv2d", "conv_transpose2d", "linear")  # ops named by their module alone, as ONNX names its Conv


def layer_name(node) -> str | None:
    """The ``in_layer`` name of an exported graph's op: its module path for a conv or linear layer, else
    ``module:Op`` (``blocks.0:Add``, ``tail.1.act:LeakyRelu``; ``:Mul`` for an op of the network's own forward)."""
    path = _module_path(node)
    if path is None:
        return None
    op = aten_op(node)
    return path if op in WEIGHTED else f"{path}:{''.join(w.capitalize() for w in op.split('_'))}"


def _module_path(node) -> str | None:
    stack = node.meta.get("nn_module_stack")
    if node.op != "call_function" or not stack:
        return None
    path = list(stack.values())[-1][0]
    return path[len(WRAPPER) + 1:] if path.startswith(WRAPPER + ".") else "" if path == WRAPPER else path


def aten_op(node) -> str:
    """A graph node's aten op without its overload: ``conv2d``, ``leaky_relu``, ``add``."""
    return str(getattr(node.target, "__name__", node.target)).split(".")[0]


def _quantizer(qat: bool = False, float_layers: tuple[str, ...] = ()):
    """litert-torch's PT2E quantizer, with the element-wise ops annotated too (integer end to end); for QAT
    without the conv-BN patterns: BatchNorm is folded before export, so they have nothing to match (and
    litert-torch 0.10 builds them in a way torch 2.13's export refuses). ``float_layers`` (``in_layer`` names)
    are left unannotated, and so is everything computed from them, as for ``FLOAT_OPS``: the converter makes a
    float op int8 again when a QUANTIZE follows it (measured: `dped_mobile`'s output conv, feeding the int8
    residual add, came back int8). So on TFLite a float layer floats the rest of the network after it, which
    suits the last layers, the most sensitive ones. (litert-torch 0.10 refuses ``set_module_name(name, None)``,
    so the annotations are removed here instead.)"""
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.pt2e_quantizer_utils import get_input_act_qspec, get_output_act_qspec
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    def aten(ops: tuple[str, ...]) -> set:
        return {getattr(getattr(torch.ops.aten, op.split(".")[0]), op.split(".")[1]) for op in ops}

    targets, floats = aten(ELEMENTWISE), aten(FLOAT_OPS)

    class IntegerQuantizer(pt2e_quantizer.PT2EQuantizer):
        STATIC_QAT_ONLY_OPS = [] if qat else pt2e_quantizer.PT2EQuantizer.STATIC_QAT_ONLY_OPS

        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            config = self.global_config
            if config is not None and config.input_activation is not None:
                for node in model.graph.nodes:
                    if node.op == "call_function" and node.target in targets and _same_shapes(node):
                        inputs = {a: get_input_act_qspec(config) for a in node.args[:2] if isinstance(a, torch.fx.Node)}
                        node.meta["quantization_annotation"] = QuantizationAnnotation(
                            input_qspec_map=inputs, output_qspec=get_output_act_qspec(config), _annotated=True)
            model = super().annotate(model)
            kept: set[torch.fx.Node] = set()  # a FLOAT_OPS node and what is computed from it, up to a concat
            floated: set[torch.fx.Node] = set()  # a float layer's ops and everything computed from them
            matched = {layer: False for layer in float_layers}
            for node in model.graph.nodes:
                if node.op != "call_function":
                    continue
                if node.target in floats or any(isinstance(a, torch.fx.Node) and a in kept for a in node.args):
                    kept.add(node)
                    node.meta.pop("quantization_annotation", None)
                # a list's items too: a float layer that feeds a concat (a U-Net's skip) would come back int8
                if any(a in floated for a in node.all_input_nodes):
                    floated.add(node)
                for layer in float_layers:
                    if in_layer(node, layer):
                        matched[layer] = True
                        floated.add(node)
                if any(str(kind).rsplit(".", 1)[-1] in FLOAT_MODULES
                       for _, kind in (node.meta.get("nn_module_stack") or {}).values()):
                    floated.add(node)
                if node in floated:
                    node.meta.pop("quantization_annotation", None)
                    if node.target in CONCATS:  # its int8 inputs would set the scale of its float ones
                        for a in node.all_input_nodes:
                            if a.op == "call_function":
                                a.meta.pop("quantization_annotation", None)
            unknown = [layer for layer, found in matched.items() if not found]
            if unknown:
                names = sorted({p[len(WRAPPER) + 1:] for n in model.graph.nodes
                                for p, _ in (n.meta.get("nn_module_stack") or {}).values()
                                if p.startswith(WRAPPER + ".") and p.count(".") <= 3})
                raise ValueError(f"--float-layers {','.join(unknown)}: no such layer in this model; its modules: "
                                 f"{', '.join(names[:40])}")
            return model

    return IntegerQuantizer


def pt2e_int8(module: nn.Module, example: dict[str, torch.Tensor], calibration: list[dict[str, torch.Tensor]],
              per_channel: bool = True, method: str = "histogram", float_layers: tuple[str, ...] = ()):
    """Quantize ``module`` (keyword inputs) with PT2E; returns (quantized module, litert-torch QuantConfig).
    ``float_layers``: layers kept in float (``in_layer``).

    ``method``: the activation observer: ``histogram`` (litert-torch's default: the range that minimises the L2
    quantization error of a histogram) or ``minmax`` (the observed extremes)."""
    from litert_torch.quantize import quant_config
    from torchao.quantization.pt2e import quantize_pt2e

    graph, quantizer = calibrated(module, example, calibration, method, per_channel, float_layers)
    graph = quantize_pt2e.convert_pt2e(graph, fold_quantize=False)  # BN is folded already: train/eval is moot
    return graph, quant_config.QuantConfig(pt2e_quantizer=quantizer)


def calibrated(module: nn.Module, example: dict[str, torch.Tensor], calibration: list[dict[str, torch.Tensor]],
               method: str = "histogram", per_channel: bool = True, float_layers: tuple[str, ...] = ()):
    """``module`` traced, annotated by our quantizer and run on ``calibration`` (its observers hold the ranges);
    returns (graph, quantizer). ``pt2e_int8`` converts it."""
    import dataclasses

    from litert_torch.quantize import pt2e_quantizer
    from torchao.quantization.pt2e import MinMaxObserver, quantize_pt2e

    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r} for TFLite; choose from {', '.join(METHODS)}")
    config = pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=per_channel)
    if method == "minmax":
        act = dataclasses.replace(config.input_activation,
                                  observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2 ** -12))
        config = dataclasses.replace(config, input_activation=act, output_activation=act)
    graph = torch.export.export(module.eval(), (), example).module()
    quantizer = _quantizer(float_layers=float_layers)().set_global(config)
    graph = quantize_pt2e.prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for kwargs in calibration:
            graph(**kwargs)
    return graph, quantizer


def qat_crops(data: list[dict[str, torch.Tensor]], size: int) -> list[dict[str, torch.Tensor]]:
    """The NHWC images of ``data`` cut into size x size crops (the thumbnail, the whole photo's, kept with each)."""
    from artifacts.io import IMAGE

    out = []
    for item in data:
        image = item[IMAGE]
        for y in range(0, image.shape[1] - size + 1, size):
            for x in range(0, image.shape[2] - size + 1, size):
                out.append({**item, IMAGE: image[:, y:y + size, x:x + size]})
    return out or data


def prepare_qat(module: nn.Module, example: dict[str, torch.Tensor], calibration: list[dict[str, torch.Tensor]],
                per_channel: bool = True, dynamic_hw: tuple[str, ...] = (), float_layers: tuple[str, ...] = (),
                multiple: int = 1, channels_first: bool = False, dynamic_batch: bool = False):
    """PT2E's QAT graph of a copy of ``module`` (keyword inputs as ``example``); returns (graph, quantizer).

    The graph gets litert-torch's QAT config: weights fake-quantized per channel, their ranges observed afresh at
    each step. Activations are fake-quantized with the histogram observer of the PTQ recipe, which first sees
    ``calibration`` (fake quantization off), so QAT starts from exactly the PTQ file's ranges; the activation ranges
    are then frozen. The inputs named in ``dynamic_hw`` (NHWC, or NCHW with ``channels_first``) are traced with
    dynamic H and W (multiples of ``multiple``), so the graph fine-tunes on crops of any size; with
    ``dynamic_batch``, every input takes any batch size. The graph's parameters keep ``module``'s names and
    are its own: training it leaves ``module`` as it was."""
    import copy
    import dataclasses

    from litert_torch.quantize import pt2e_quantizer
    from torchao.quantization.pt2e import FakeQuantize, HistogramObserver, quantize_pt2e

    config = pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=per_channel, is_qat=True)
    act = dataclasses.replace(config.input_activation,
                              observer_or_fake_quant_ctr=FakeQuantize.with_args(observer=HistogramObserver))
    config = dataclasses.replace(config, input_activation=act, output_activation=act)
    dims = {k: torch.export.Dim(k, min=8, max=16384) if multiple == 1 else
            torch.export.Dim(k, min=max(2, 8 // multiple), max=16384 // multiple) * multiple for k in ("h", "w")}
    h, w = (2, 3) if channels_first else (1, 2)
    batch = {0: torch.export.Dim("batch", min=1, max=4096)} if dynamic_batch else {}
    shapes = {k: ({**batch, h: dims["h"], w: dims["w"]} if k in dynamic_hw else batch or None) for k in example}
    # the exported graph shares its parameters with the module it traced: train a copy, never the caller's weights
    graph = torch.export.export(copy.deepcopy(module).eval(), (), example,
                                dynamic_shapes=shapes if dynamic_hw or dynamic_batch else None).module()
    quantizer = _quantizer(qat=True, float_layers=float_layers)().set_global(config)
    graph = quantize_pt2e.prepare_qat_pt2e(graph, quantizer)
    calibrate_activations(graph, calibration)
    return graph, quantizer


def calibrate_activations(graph: nn.Module, calibration: list[dict[str, torch.Tensor]]) -> None:
    """Sets the activation ranges of a QAT graph (``prepare_qat``) as the PTQ recipe calibrates its current weights:
    the activations' observers start afresh, see ``calibration`` with fake quantization off, and are frozen again.
    The weights' per-channel ranges are observed at every step anyway."""
    from torchao.quantization.pt2e import FakeQuantize, disable_fake_quant, enable_fake_quant

    activations = [m for m in graph.modules() if isinstance(m, FakeQuantize) and not m.is_per_channel
                   and hasattr(m.activation_post_process, "min_val")]   # not a fixed range (a sigmoid's)
    with torch.no_grad():
        for m in activations:   # uninitialised, as a new observer (HistogramObserver has no reset of its own)
            m.activation_post_process.min_val.fill_(float("inf"))
            m.activation_post_process.max_val.fill_(float("-inf"))
            m.enable_observer()
        graph.apply(disable_fake_quant)
        for kwargs in calibration:
            graph(**kwargs)
    graph.apply(enable_fake_quant)
    for m in activations:
        m.disable_observer()


def pt2e_qat(module: nn.Module, example: dict[str, torch.Tensor], calibration: list[dict[str, torch.Tensor]],
             data: list[dict[str, torch.Tensor]], steps: int, lr: float = 1e-5, per_channel: bool = True,
             dynamic_hw: tuple[str, ...] = (), progress: bool = False, float_layers: tuple[str, ...] = (),
             multiple: int = 1):
    """Quantization-aware fine-tuning with PT2E; returns (quantized module, litert-torch QuantConfig, losses).

    The graph of ``prepare_qat`` (PTQ's ranges, frozen) has its weights fine-tuned for ``steps`` Adam steps, with
    fake quantization on, to reproduce the float model's own output (mean squared error against ``module``): the
    fidelity the export gate measures. ``data``: keyword inputs, cycled, flipped left-right every other pass; with
    ``dynamic_hw`` the model fine-tunes on small crops (fake quantization makes each step several times a float
    step) and converts at the export size."""
    import copy

    from litert_torch.quantize import quant_config
    from torchao.quantization.pt2e import quantize_pt2e

    teacher = copy.deepcopy(module).eval()
    graph, quantizer = prepare_qat(module, example, calibration, per_channel, dynamic_hw, float_layers, multiple)
    opt = torch.optim.Adam([p for p in graph.parameters() if p.requires_grad], lr=lr)
    losses = []
    steps_iter = range(steps)
    if progress:
        from tqdm import tqdm

        steps_iter = tqdm(steps_iter, desc="qat", unit="step", leave=False)
    for step in steps_iter:
        batch = data[step % len(data)]
        if (step // len(data)) % 2:
            batch = {k: v.flip(2) for k, v in batch.items()}     # NHWC: W is dim 2
        with torch.no_grad():
            target = teacher(**batch)
        out = graph(**batch)
        if isinstance(out, dict):   # named outputs
            loss = sum(torch.nn.functional.mse_loss(out[k], target[k]) for k in target)
        else:
            loss = torch.nn.functional.mse_loss(out, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    graph = quantize_pt2e.convert_pt2e(graph, fold_quantize=False)
    return graph, quant_config.QuantConfig(pt2e_quantizer=quantizer), losses


def own_input_scale(module: nn.Module) -> nn.Module:
    """A copy of ``module`` in which every ``InputSkip`` is an identity 1x1 conv (exact in float).

    PT2E gives a concatenation one scale shared by all its inputs. Where the input image joins a concatenation
    directly (the intrinsic U-Net's head), the image would be quantized with the concatenation's scale (about
    0.024: 41 of 256 levels over [0, 1]); behind a conv it keeps its own [0, 1] scale.
    """
    import copy

    from models.layers import InputSkip

    names = [name for name, m in module.named_modules() if isinstance(m, InputSkip)]
    if not names:
        return module
    module = copy.deepcopy(module)
    for name in names:
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        channels = getattr(parent, attr).channels
        conv = nn.Conv2d(channels, channels, 1, bias=False)
        with torch.no_grad():
            conv.weight.copy_(torch.eye(channels)[:, :, None, None])
        setattr(parent, attr, conv)
    return module


def _fp16_recipe():
    from ai_edge_quantizer import qtyping, recipe
    from ai_edge_quantizer.recipe_manager import RecipeManager

    manager = RecipeManager()
    manager.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                   num_bits=16, algorithm_key=recipe.AlgorithmName.FLOAT_CASTING)
    return manager.get_quantization_recipe()


def compress(src: Path, dst: Path, precision: str) -> None:
    """fp16 or dynamic-int8 version of a float .tflite, written to ``dst``."""
    from ai_edge_quantizer import quantizer, recipe

    recipes = {"fp16": _fp16_recipe, "dynamic-int8": recipe.dynamic_wi8_afp32}
    if precision not in recipes:
        raise ValueError(f"TFLite compression supports {', '.join(recipes)}, not {precision!r}")
    result = quantizer.Quantizer(str(src), recipes[precision]()).quantize()
    dst.write_bytes(bytes(result.quantized_model))
