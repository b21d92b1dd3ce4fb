"""LiteRT (ai-edge-litert): the classic Interpreter with the XNNPACK CPU delegate. Imports no PyTorch, so a
benchmark child's peak memory is LiteRT's own.

Resizable artifacts declare H and W as dynamic (-1 in ``shape_signature``): the loader resizes strictly, as an app
or LiteRT's CompiledModel does, so a file that does not say it resizes is refused at another size.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..io import IMAGE, THUMBNAIL, dequantize_output, join_outputs, quantize_input, thumbnail_input

NAME, TARGET = "litert", "tflite"


def unavailable() -> str | None:
    try:
        import ai_edge_litert  # noqa: F401
    except ImportError:
        return "ai-edge-litert is not installed (pip install ai-edge-litert)"
    return None


def _interpreter(path: str | Path, threads: int | None = None):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path), num_threads=threads)


def _signature(interp) -> tuple[str, str, bool]:
    """(signature key, image input name, whether it takes a thumbnail) of an exported enhancer: one signature with
    one image input, and a thumbnail input for image-adaptive models."""
    signatures = interp.get_signature_list()
    if len(signatures) != 1:
        raise ValueError(f"expected one signature, found {', '.join(signatures) or 'none'}")
    key, io = next(iter(signatures.items()))
    inputs = sorted(io["inputs"])
    if len(inputs) == 1:
        return key, inputs[0], False
    if inputs != sorted([IMAGE, THUMBNAIL]):
        raise ValueError(f"signature {key!r} has inputs {io['inputs']}; expected one image (and a thumbnail)")
    return key, IMAGE, True


def load(path: str | Path, threads: int | None = None) -> Callable[..., np.ndarray]:
    """A function mapping float32 (H, W, 3) in [0, 1] (and for image-adaptive models the whole photo's
    thumbnail, default: the image's own) to the artifact's outputs (H, W, C), joined by name."""
    interp = _interpreter(path, threads)
    key, name, adaptive = _signature(interp)
    details = interp.get_signature_runner(key).get_input_details()
    index = details[name]["index"]
    size = int(details[THUMBNAIL]["shape"][1]) if adaptive else 0
    state: dict = {"shape": None}

    def run(image: np.ndarray, thumbnail: np.ndarray | None = None) -> np.ndarray:
        shape = (1, image.shape[0], image.shape[1], 3)
        if state["shape"] != shape:  # resize once per new size, then reuse the allocated graph
            state.pop("runner", None)  # LiteRT refuses to resize while a runner holds its tensors
            if state["shape"] is not None or list(interp.get_tensor_details()[index]["shape"]) != list(shape):
                try:
                    interp.resize_tensor_input(index, shape, strict=True)
                except (RuntimeError, ValueError) as err:
                    raise ValueError(f"{Path(path).name} does not take {shape[1]}x{shape[2]} input (its H and W "
                                     f"are not dynamic: exported at a fixed size): {err}") from None
            interp.allocate_tensors()
            runner = interp.get_signature_runner(key)
            state.update(shape=shape, runner=runner, inputs=runner.get_input_details(),
                         outputs=runner.get_output_details())
        feed = {name: quantize_input(image[None].astype(np.float32), state["inputs"][name])}
        if adaptive:
            feed[THUMBNAIL] = quantize_input(thumbnail_input(image, size, thumbnail)[None], state["inputs"][THUMBNAIL])
        outputs = state["runner"](**feed)
        return join_outputs({k: dequantize_output(v, state["outputs"][k]) for k, v in outputs.items()})[0]

    return run


def _tensor(name: str, detail: dict) -> dict:
    dtype = np.dtype(detail["dtype"]).name
    quant = None
    if np.dtype(dtype).kind != "f":
        scale, zero_point = detail["quantization"]
        quant = {"scale": float(scale), "zero_point": int(zero_point)}
    signature = [int(v) for v in detail["shape_signature"]]
    return {"name": name, "shape": [int(v) for v in detail["shape"]],
            "dynamic_dims": [i for i, v in enumerate(signature) if v == -1], "dtype": dtype, "quantization": quant}


def describe(path: str | Path) -> dict:
    """What LiteRT reports for the artifact's signature: inputs and outputs by signature name, with shape,
    dynamic dims (-1 in shape_signature), dtype and quantization; plus the signature key."""
    interp = _interpreter(path)
    key, _, _ = _signature(interp)
    runner = interp.get_signature_runner(key)
    return {"signature": key,
            "inputs": [_tensor(k, v) for k, v in sorted(runner.get_input_details().items())],
            "outputs": [_tensor(k, v) for k, v in sorted(runner.get_output_details().items())]}


def embedded(path: str | Path) -> dict[str, str]:
    """The flatbuffer's metadata entries (name -> text)."""
    from ai_edge_litert import schema_py_generated as schema

    raw = Path(path).read_bytes()
    model = schema.Model.GetRootAs(raw, 0)
    out = {}
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        buf = model.Buffers(entry.Buffer())
        if buf.Offset() > 1:  # stored after the flatbuffer
            data = raw[buf.Offset():buf.Offset() + buf.Size()]
        else:
            data = buf.DataAsNumpy()
            data = b"" if isinstance(data, int) else bytes(data)
        out[entry.Name().decode()] = data.decode(errors="replace")
    return out


def op_names(path: str | Path) -> list[str]:
    """Builtin op names of the graph, in order (e.g. to count TRANSPOSE ops or check int8 convolutions)."""
    return [op["op_name"] for op in _interpreter(path)._get_ops_details()]  # noqa: SLF001 - LiteRT's only listing


def conv_input_types(path: str | Path) -> list[str]:
    """dtype of the activation input of every CONV_2D / DEPTHWISE_CONV_2D (all 'int8' in a real int8 model)."""
    ops = _interpreter(path)._get_ops_details()  # noqa: SLF001
    return [np.dtype(op["operand_types"][0]).name for op in ops if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
