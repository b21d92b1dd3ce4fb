"""Every target and precision buildable here: loads in its own runtime and passes its gate."""
import json

import numpy as np
import onnx
import pytest

from export.__main__ import main as export_main
from export.targets import TARGETS, resolve
from quantize.calibration import calibration_images
from quantize.tflite import conv_input_types
from tests.conftest import write_photo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from tests.conftest import save_checkpoint

    root = tmp_path_factory.mktemp("all")
    ckpt = save_checkpoint(root / "tiny.pt", width=8, blocks=1)
    code = export_main(["--target", "all", "--precision", "all", "--checkpoint", str(ckpt), "--size", "64x64",
                        "--calibration-count", "4", "--out", str(root / "out")])
    return code, root / "out"


def test_all_targets_and_precisions_export_and_pass(exported, capsys):
    code, out = exported
    assert code == 0
    for target in TARGETS.values():
        for precision in target.precisions:
            sidecar = json.loads((out / target.sidecar_name(f"dped_mobile_{precision}")).read_text())
            assert (out / f"dped_mobile_{precision}{target.suffix}").exists(), (target.name, precision)
            assert sidecar["fidelity"]["passed"] and sidecar["target"] == target.name


def test_int8_tflite_is_really_integer(exported):
    _, out = exported
    types = conv_input_types(out / "dped_mobile_int8.tflite")
    assert types and set(types) == {"int8"}
    assert set(conv_input_types(out / "dped_mobile_dynamic-int8.tflite")) == {"float32"}


def test_int8_onnx_has_qdq_around_convolutions(exported):
    _, out = exported
    graph = onnx.load(str(out / "dped_mobile_int8.onnx")).graph
    producers = {o: n.op_type for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert convs and all(producers.get(n.input[0]) == "DequantizeLinear" for n in convs)
    assert all(producers.get(n.input[1]) == "DequantizeLinear" for n in convs)
    props = {p.key: p.value for p in onnx.load(str(out / "dped_mobile_fp32.onnx")).metadata_props}
    assert props["model"] == "dped_mobile" and json.loads(props["input"])["layout"] == "NCHW"


def test_unsupported_combination_exits_2_listing_supported(capsys):
    assert export_main(["--target", "onnx", "--precision", "dynamic-int8"]) == 2
    assert "onnx: fp32, fp16, int8" in capsys.readouterr().err
    with pytest.raises(ValueError):
        resolve("tflite", "int4")


def test_calibration_from_a_folder_skips_unreadable_files(tmp_path):
    write_photo(tmp_path / "a.png", 30, 40)
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8broken")
    crops = calibration_images(tmp_path, (48, 48), count=3, progress=False)
    assert len(crops) == 3 and all(c.shape == (48, 48, 3) for c in crops)
    with pytest.raises(ValueError, match="not found"):
        calibration_images(tmp_path / "none", (8, 8))
