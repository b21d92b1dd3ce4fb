"""LiteRT (ai-edge-litert): the classic Interpreter with the XNNPACK CPU delegate. Imports no PyTorch, so a
benchmark child's peak memory is LiteRT's own.

Resizable artifacts declare H and W as dynamic (-1 in ``shape_signature``): the loader resizes strictly, as an app
or LiteRT's CompiledModel does, so a file that does not say it resizes is refused at another size.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..io import dequantize_output, join_outputs, quantize_input

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


def _signature(interp) -> tuple[str, str]:
    """(signature key, input name) of an exported enhancer: one signature with one image input."""
    signatures = interp.get_signature_list()
    if len(signatures) != 1:
        raise ValueError(f"expected one signature, found {', '.join(signatures) or 'none'}")
    key, io = next(iter(signatures.items()))
    if len(io["inputs"]) != 1:
        raise ValueError(f"signature {key!r} has inputs {io['inputs']}; expected one image")
    return key, io["inputs"][0]


def load(path: str | Path, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A function mapping float32 (H, W, 3) in [0, 1] to the artifact's outputs (H, W, C), joined by name."""
    interp = _interpreter(path, threads)
    key, name = _signature(interp)
    index = interp.get_signature_runner(key).get_input_details()[name]["index"]
    state: dict = {"shape": None}

    def run(image: np.ndarray) -> np.ndarray:
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
            state.update(shape=shape, runner=runner, input=runner.get_input_details()[name],
                         outputs=runner.get_output_details())
        outputs = state["runner"](**{name: quantize_input(image[None].astype(np.float32), state["input"])})
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
    key, _ = _signature(interp)
    runner = interp.get_signature_runner(key)
    return {"signature": key,
            "inputs": [_tensor(k, v) for k, v in runner.get_input_details().items()],
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
