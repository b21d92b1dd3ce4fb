"""Writing the sidecar into an artifact's own metadata, and the TFLite flatbuffer edits export makes.

Each format keeps the sidecar JSON under ``dslr_mobile``: a TFLite metadata entry, an ONNX metadata property, a
Core ML user-defined metadata entry. TensorRT engines hold no user metadata: the sidecar file is their contract.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from .io import THUMBNAIL
from .sidecar import METADATA_KEY
from .targets import target_of


def embed(path: str | Path, sidecar_json: str) -> None:
    """Store ``sidecar_json`` in the artifact at ``path`` (edited in place)."""
    path = Path(path)
    target = target_of(path).name
    if target == "tflite":
        rewrite_tflite(path, metadata={METADATA_KEY: sidecar_json})
    elif target == "onnx":
        _embed_onnx(path, sidecar_json)
    elif target == "coreml":
        _embed_coreml(path, sidecar_json)


def rewrite_tflite(path: Path, metadata: dict[str, str] | None = None, dynamic_hw: bool = False) -> None:
    """Edit a .tflite flatbuffer in place: add or replace metadata entries; mark H and W of the graph's inputs and
    outputs dynamic (-1 in ``shape_signature``, NHWC), but for the fixed-size thumbnail of image-adaptive models.

    ai-edge-quantizer may store weights after the flatbuffer (buffers with an offset); they are brought inline
    first, since re-packing the flatbuffer would drop them.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    raw = path.read_bytes()
    model = schema.ModelT.InitFromPackedBuf(raw, 0)
    for buf in model.buffers or []:
        if buf.offset and buf.offset > 1:
            buf.data = np.frombuffer(raw[buf.offset:buf.offset + buf.size], dtype=np.uint8)
            buf.offset, buf.size = 0, 0
    if dynamic_hw:
        fixed = {t.tensorIndex for sig in model.signatureDefs or [] for t in sig.inputs or []
                 if t.name.decode() == THUMBNAIL}
        for graph in model.subgraphs:
            for index in [i for i in [*graph.inputs, *graph.outputs] if i not in fixed]:
                tensor = graph.tensors[index]
                shape = tensor.shapeSignature if tensor.shapeSignature is not None else tensor.shape
                signature = np.array(shape, dtype=np.int32)
                signature[1:3] = -1
                tensor.shapeSignature = signature
    if metadata:
        model.metadata = [m for m in (model.metadata or []) if m.name.decode() not in metadata]
        for name, text in metadata.items():
            buf = schema.BufferT()
            buf.data = np.frombuffer(text.encode(), dtype=np.uint8)
            model.buffers.append(buf)
            entry = schema.MetadataT()
            entry.name, entry.buffer = name, len(model.buffers) - 1
            model.metadata.append(entry)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))


def _embed_onnx(path: Path, sidecar_json: str) -> None:
    import onnx

    proto = onnx.load(str(path))
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key != METADATA_KEY]
    del proto.metadata_props[:]
    for key, value in [*kept, (METADATA_KEY, sidecar_json)]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def _embed_coreml(path: Path, sidecar_json: str) -> None:
    import coremltools as ct

    ml = ct.models.MLModel(str(path), skip_model_load=True)
    ml.user_defined_metadata[METADATA_KEY] = sidecar_json
    staged = path.with_name(f"{path.name[:-len('.mlpackage')]}.meta.mlpackage")  # coremltools wants the suffix
    ml.save(str(staged))
    shutil.rmtree(path)
    staged.rename(path)
