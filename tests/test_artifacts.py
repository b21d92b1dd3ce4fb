"""The artifact layer: the sidecar reads and writes itself, and what a file says is what its runtime reports.

The runtime facts are read here through each runtime's own API (LiteRT's Interpreter and CompiledModel, ONNX
Runtime's session, coremltools' spec), not through the project's loaders.
"""
import ast
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import onnx
import pytest

from artifacts import SCHEMA_VERSION, TARGETS, Sidecar, SidecarError, load, target_of
from artifacts.sidecar import METADATA_KEY, Quantization

ROOT = Path(__file__).resolve().parents[1]


def test_quantization_levels_over_the_image_range():
    assert Quantization(1 / 255, -128).levels(0.0, 1.0, "int8") == 256
    assert Quantization(0.0237, -128).levels(0.0, 1.0, "int8") == 43
    assert Quantization(1 / 255, 0).levels(0.0, 1.0, "uint8") == 256


# --- reading and writing -------------------------------------------------------------------------------------

FIXTURE = ROOT / "tests" / "fixtures" / "sidecar.json"


def _fixture_dict() -> dict:
    data = json.loads(FIXTURE.read_text())
    data.update(date="2026-01-01T00:00:00+00:00", versions={"torch": "x"}, export_seconds=1.0,
                weights_sha256=None, source="test", fidelity=None)
    return data


def test_sidecar_round_trips_through_json(tmp_path):
    sidecar = Sidecar.from_dict(_fixture_dict())
    path = sidecar.write(tmp_path / "m.json")
    assert Sidecar.read(path) == sidecar and Sidecar.from_json(sidecar.to_json()) == sidecar
    assert sidecar.schema_version == SCHEMA_VERSION and sidecar.resizable
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("change, needle", [
    (lambda d: d.pop("schema_version"), "schema_version None"),
    (lambda d: d.update(schema_version=1), "schema_version 1; this dslr-mobile reads version 2"),
    (lambda d: [d.pop("schema"), d.pop("schema_version")], "older dslr-mobile"),
    (lambda d: d.update(schema="yolo"), "not a dslr-mobile sidecar"),
    (lambda d: d.pop("halo"), "lacks the field halo"),
    (lambda d: d["input"].pop("dtype"), "sidecar.input lacks the field dtype"),
    (lambda d: d["input"].update(dtype="int8"), "input.quantization needs scale > 0"),
    (lambda d: d["input"].update(layout="CHW"), "expected NHWC or NCHW"),
    (lambda d: d.update(halo="12"), "sidecar.halo should be int"),
    (lambda d: d.update(outputs=[]), "outputs must be a non-empty list"),
    (lambda d: d.update(colour="RGB"), "unknown field(s) colour"),
])
def test_bad_sidecars_are_one_line_errors(change, needle):
    data = _fixture_dict()
    change(data)
    with pytest.raises(SidecarError) as err:
        Sidecar.from_dict(data)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_unreadable_files_are_one_line_errors(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SidecarError, match="not valid JSON"):
        Sidecar.read(tmp_path / "bad.json")
    with pytest.raises(SidecarError, match="no such sidecar"):
        Sidecar.read(tmp_path / "none.json")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(SidecarError, match="not a JSON object"):
        Sidecar.read(tmp_path / "list.json")


def test_target_table_is_the_only_definition():
    assert target_of("a/b_fp32.tflite").name == "tflite" and target_of("x.mlpackage").runtime == "coreml"
    with pytest.raises(ValueError, match=".tflite, .onnx, .mlpackage, .engine"):
        target_of("model.pb")
    # no other module spells out the precisions of a target or the suffixes of the formats
    for path in [*ROOT.glob("*/*.py"), *ROOT.glob("*/*/*.py")]:
        if path.parts[-2] in ("tests", ".venv") or ".venv" in path.parts or path.name == "targets.py":
            continue
        text = path.read_text()
        assert '"dynamic-int8", "int8")' not in text and "PRECISIONS = (" not in text, path
        assert '".tflite": ' not in text and "FIDELITY_GATES" not in text, path


def _imports(package: str, front_ends: bool = True) -> set[str]:
    """The top-level packages ``package`` imports; without its command-line front ends (``__main__``, ``*_cli``)
    if not ``front_ends``."""
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        if not front_ends and (path.stem == "__main__" or path.stem.endswith("_cli")):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
    return found


def test_packages_import_downwards_only():
    assert not {"export", "benchmark", "enhance", "train", "quantize", "torch"} & _imports("photos")
    assert not {"export", "benchmark", "enhance", "train", "quantize"} & _imports("artifacts")
    # quantize's recipes sit below export, which uses them; its sensitivity command (--model) builds the network
    # as the export converts it, so that front end alone sits above export
    assert "export" not in _imports("quantize", front_ends=False) and "enhance" not in _imports("quantize")
    assert "benchmark" not in _imports("enhance") and "enhance" not in _imports("benchmark")
    assert not {"enhance", "export", "benchmark"} & _imports("train")
    assert "enhance" not in _imports("export")


def test_the_artifact_layer_imports_no_pytorch():
    code = ("import sys, artifacts, artifacts.fidelity, artifacts.tiling, artifacts.embed, artifacts.runtimes.litert, "
            "artifacts.runtimes.onnxruntime, artifacts.runtimes.coreml; print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "False"


# --- what a file says is what it is ---------------------------------------------------------------------------

def _litert_facts(path: Path) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner("enhance")

    def fact(name, d):
        quant = None if np.dtype(d["dtype"]).kind == "f" else \
            {"scale": pytest.approx(d["quantization"][0]), "zero_point": d["quantization"][1]}
        return {"name": name, "dtype": np.dtype(d["dtype"]).name, "shape": d["shape"].tolist(),
                "dynamic_dims": [i for i, v in enumerate(d["shape_signature"]) if v == -1], "quantization": quant}

    return {"inputs": [fact(k, v) for k, v in runner.get_input_details().items()],
            "outputs": [fact(k, v) for k, v in sorted(runner.get_output_details().items())]}


def _onnx_facts(path: Path, exported_hw: tuple[int, int]) -> dict:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    types = {"tensor(float)": "float32", "tensor(float16)": "float16"}

    def fact(arg, channels):
        return {"name": arg.name, "dtype": types[arg.type], "shape": [1, channels, *exported_hw],
                "dynamic_dims": [i for i, d in enumerate(arg.shape) if not isinstance(d, int)], "quantization": None}

    return {"inputs": [fact(a, 3) for a in session.get_inputs()],
            "outputs": [fact(a, 3) for a in sorted(session.get_outputs(), key=lambda a: a.name)],
            "metadata": session.get_modelmeta().custom_metadata_map[METADATA_KEY]}


def _coreml_facts(path: Path) -> dict:
    import coremltools as ct
    from coremltools.proto import FeatureTypes_pb2 as ft

    spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    names = {ft.ArrayFeatureType.FLOAT32: "float32", ft.ArrayFeatureType.FLOAT16: "float16"}

    def fact(f):
        arr = f.type.multiArrayType
        ranges = arr.shapeRange.sizeRanges
        if not arr.shape:  # ML program outputs: only name and dtype are stated
            return {"name": f.name, "dtype": names[arr.dataType]}
        return {"name": f.name, "dtype": names[arr.dataType], "shape": list(arr.shape),
                "dynamic_dims": [i for i, r in enumerate(ranges) if r.upperBound != r.lowerBound],
                "quantization": None}

    return {"inputs": [fact(f) for f in spec.description.input], "outputs": [fact(f) for f in spec.description.output],
            "metadata": spec.description.metadata.userDefined[METADATA_KEY]}


def _said(sidecar: Sidecar) -> dict:
    def spec(t):
        d = asdict(t)
        return {k: d[k] for k in ("name", "dtype", "shape", "dynamic_dims", "quantization")}
    return {"inputs": [spec(sidecar.input)], "outputs": [spec(t) for t in sidecar.outputs]}


@pytest.mark.slow
def test_sidecar_and_embedded_metadata_equal_what_each_runtime_reports(exported):
    from ai_edge_litert.tools.flatbuffer_utils import read_model

    written, out = exported
    assert written, "nothing was exported"
    for (target, precision), result in written.items():
        sidecar = result.sidecar
        assert Sidecar.read(result.sidecar_path) == sidecar
        where = f"{target} {precision}"
        if target == "tflite":
            facts = _litert_facts(result.artifact)
            entries = {m.name.decode(): bytes(read_model(str(result.artifact)).buffers[m.buffer].data).decode()
                       for m in read_model(str(result.artifact)).metadata}
            embedded = entries[METADATA_KEY]
            assert sidecar.signature == "enhance", where
        elif target == "onnx":
            facts = _onnx_facts(result.artifact, sidecar.input.hw)
            embedded = facts.pop("metadata")
        elif target == "coreml":
            facts = _coreml_facts(result.artifact)
            embedded = facts.pop("metadata")
            said = _said(sidecar)
            for found, stated in zip(facts["outputs"], said["outputs"]):
                if "shape" not in found:  # the spec leaves it open: the sidecar takes the input's size and dims
                    assert stated["shape"][2:] == sidecar.input.shape[2:], where
                    found.update({k: stated[k] for k in ("shape", "dynamic_dims", "quantization")})
            assert facts["inputs"][0]["dtype"] == "float32", f"{where}: float32 I/O is the default"
        else:
            continue
        assert _said(sidecar) == facts, where
        assert Sidecar.from_json(embedded) == sidecar, f"{where}: embedded metadata differs from the sidecar"
        assert sidecar.input.dynamic_dims == ([1, 2] if TARGETS[target].layout == "NHWC" else [2, 3]), where


@pytest.mark.slow
def test_resizable_tflite_resizes_strictly_in_litert_and_compiled_model(exported):
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.interpreter import Interpreter

    written, _ = exported
    for precision in ("fp32", "fp16", "dynamic-int8", "int8"):
        path = str(written[("tflite", precision)].artifact)
        interp = Interpreter(model_path=path)
        interp.resize_tensor_input(interp.get_input_details()[0]["index"], [1, 720, 1280, 3], strict=True)
        interp.allocate_tensors()
        assert list(interp.get_output_details()[0]["shape"]) == [1, 720, 1280, 3], precision
        model = CompiledModel.from_file(path)
        model.resize_input_tensor(0, [1, 720, 1280, 3])  # strict by default
        assert model.get_input_tensor_details("enhance")["image"]["shape"] == [1, 720, 1280, 3], precision


@pytest.mark.slow
def test_onnx_artifacts_pass_onnx_checker_and_the_mobile_usability_check(exported):
    written, _ = exported
    for precision in ("fp32", "fp16", "int8"):
        onnx.checker.check_model(onnx.load(str(written[("onnx", precision)].artifact)), full_check=True)
    done = subprocess.run([sys.executable, "-m", "onnxruntime.tools.check_onnx_model_mobile_usability",
                           str(written[("onnx", "fp32")].artifact)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["intrinsic_decomposer_mobile", "mdie"])
def test_int8_input_keeps_200_levels_of_the_image_range(model, tmp_path):
    """The image joins a concatenation in these graphs; its int8 scale must still cover [0, 1] finely."""
    from export.api import export_one
    from export.common import ExportSpec

    result = export_one(ExportSpec(model=model, target="tflite", precision="int8", size=(64, 64), out=tmp_path,
                                   calibration_count=2))
    assert result.ok, result.sidecar.fidelity
    image = result.sidecar.input
    if image.dtype != "float32":
        assert image.quantization.levels(0.0, 1.0, image.dtype) >= 200, image.quantization
    facts = _litert_facts(result.artifact)["inputs"][0]
    assert facts["dtype"] == image.dtype and facts["dynamic_dims"] == [1, 2]
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.interpreter import Interpreter

    # XNNPACK runs every op (the albedo's exp and clamps are kept in float: quantize.tflite.FLOAT_OPS)
    assert CompiledModel.from_file(str(result.artifact)).is_fully_accelerated()
    graph = Interpreter(model_path=str(result.artifact))
    shapes = {t["index"]: t["shape"] for t in graph.get_tensor_details()}
    ops = graph._get_ops_details()  # noqa: SLF001 - LiteRT's only listing
    assert "PAD" not in [op["op_name"] for op in ops]  # SAME stride-2 convs need no explicit pad
    # no feature map is transposed; the standalone decomposer's float tail transposes its 3-channel outputs, where
    # litert-torch's layout pass puts the NCHW/NHWC boundary (MDIE, which uses them inside, has none)
    transposed = [tuple(shapes[op["inputs"][0]]) for op in ops if op["op_name"] == "TRANSPOSE"]
    assert all(3 in (shape[1], shape[3]) for shape in transposed), transposed  # NCHW or NHWC, 3 channels
    assert model != "mdie" or not transposed, transposed
    # no wide depthwise conv (XNNPACK runs them at about 1 GMAC/s): mdie's 7x7 separable output conv is dense
    wide = [tuple(shapes[op["inputs"][1]]) for op in ops if op["op_name"] == "DEPTHWISE_CONV_2D"
            and shapes[op["inputs"][1]][1] >= 5]
    assert not wide, wide

    interp = Interpreter(model_path=str(result.artifact))
    interp.resize_tensor_input(interp.get_input_details()[0]["index"], [1, 704, 1280, 3], strict=True)  # 32 | H, W
    interp.allocate_tensors()
    out = load(result.artifact)(np.random.default_rng(0).random((96, 128, 3), dtype=np.float32))
    channels = sum(t.channels for t in result.sidecar.outputs)  # the decomposer: albedo and shading joined
    assert out.shape == (96, 128, channels) and np.isfinite(out).all()


@pytest.mark.slow
def test_dped_tflite_files_are_fully_accelerated_by_litert(exported):
    """No RELU_0_TO_1 (models.layers.clip_unit): XNNPACK takes every op, as LiteRT itself reports."""
    from ai_edge_litert.compiled_model import CompiledModel

    written, _ = exported
    for precision in ("fp32", "fp16", "int8"):
        assert CompiledModel.from_file(str(written[("tflite", precision)].artifact)).is_fully_accelerated(), precision
    # dynamic-int8 (int8 weights, float activations) runs LiteRT's own hybrid kernels, outside XNNPACK: the README
    # says so; this pins it, so that a change in LiteRT is noticed
    assert not CompiledModel.from_file(str(written[("tflite", "dynamic-int8")].artifact)).is_fully_accelerated()
    for precision in ("fp32", "int8"):
        done = subprocess.run([sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model", "--model",
                               str(written[("tflite", precision)].artifact), "--require_full_delegation",
                               "--num_runs", "2", "--warmup_runs", "1", "--num_threads", "1"],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0 and "Fully accelerated:     True" in done.stdout + done.stderr, precision
