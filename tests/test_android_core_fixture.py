"""The fixture that pins the Android core (android_demo/core) to the host's tiling and sidecar.

Writes tests/fixtures/tiling.json: tile plans for several image sizes, tile sizes and halos, and the stitched
output of a deterministic per-tile filter, all produced by artifacts.tiling; and tests/fixtures/sidecar.json, the
sidecar a real TFLite export writes (volatile fields removed). The JVM tests (TilingFixtureTest, SidecarTest)
must reproduce and read them exactly; tests/fixtures/thumbnail.json pins the thumbnail of image-adaptive models
(artifacts.thumbnail) for ThumbnailFixtureTest. When the tiling changes, this test rewrites the fixture and fails once, so
that the change is seen and committed with the JVM side.
"""
import base64
import json
from pathlib import Path

import numpy as np
import pytest

from artifacts.tiling import enhance_tiled, padded, plan_tiles
from export.__main__ import main as export_main

FIXTURES = Path(__file__).parent / "fixtures"
CASES = [  # height, width, tile, halo
    (1, 1, 16, 2), (5, 7, 16, 2), (16, 16, 16, 3), (37, 53, 16, 3), (64, 64, 32, 4), (100, 30, 24, 5),
    (33, 90, 20, 0), (17, 120, 16, 7), (120, 41, 48, 12),
]
MULTIPLE_CASES = [(45, 70, 32, 4, 16)]  # ..., size multiple: windows padded up to multiples of 16


def pattern_image(h: int, w: int) -> np.ndarray:
    """Deterministic uint8 RGB test pattern (the JVM test builds the same one)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(y * 31 + x * 17) % 256, (y * 7 + x * 43 + 50) % 256, (y * x + 3 * y + 11) % 256],
                    axis=2).astype(np.uint8)


def window_filter(window: np.ndarray) -> np.ndarray:
    """Per-tile filter whose result depends on where the window's edges are: output channel c is the maximum of
    input channel (c + 1) % 3 over the 3x3 neighbourhood, the window's outside counting as 1.0. Exact in float32
    in any language (no arithmetic besides max)."""
    padded_window = np.pad(window, ((1, 1), (1, 1), (0, 0)), constant_values=1.0)
    h, w = window.shape[:2]
    stack = [padded_window[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)]
    return np.roll(np.max(stack, axis=0), -1, axis=2)


def _case(h: int, w: int, tile: int, halo: int, multiple: int = 1) -> dict:
    fn = padded(window_filter, multiple) if multiple > 1 else window_filter
    out = enhance_tiled(pattern_image(h, w), fn, tile, halo)
    return {"height": h, "width": w, "tile": tile, "halo": halo, "multiple": multiple,
            "plan": [[t.wy, t.wx, t.wh, t.ww, t.oy, t.ox, t.oh, t.ow] for t in plan_tiles(h, w, tile, halo)],
            "output_rgb_base64": base64.b64encode(out.tobytes()).decode()}


def _write_or_compare(name: str, data: dict) -> None:
    path = FIXTURES / name
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    if path.exists() and path.read_text() == text:
        return
    path.write_text(text)
    pytest.fail(f"{path} was rewritten: the host side changed; rerun the JVM tests and commit the fixture")


def test_tiling_fixture_for_the_android_core():
    cases = [_case(*c) for c in CASES] + [_case(*c) for c in MULTIPLE_CASES]
    # sanity on the host side: every pixel owned exactly once; a halo of 1 reproduces the whole-image filter
    for c in cases:
        owned = np.zeros((c["height"], c["width"]), int)
        for _wy, _wx, _wh, _ww, oy, ox, oh, ow in c["plan"]:
            owned[oy:oy + oh, ox:ox + ow] += 1
        assert (owned == 1).all()
    whole = np.round(np.clip(window_filter(pattern_image(37, 53) / 255.0), 0, 1) * 255).astype(np.uint8)
    assert np.array_equal(enhance_tiled(pattern_image(37, 53), window_filter, 16, 1), whole)
    _write_or_compare("tiling.json", {
        "about": "written by tests/test_android_core_fixture.py from artifacts/tiling.py; read by "
                 "android_demo/core TilingFixtureTest", "cases": cases})


VOLATILE = ("date", "versions", "export_seconds", "weights_sha256", "source", "fidelity")


@pytest.mark.slow
def test_sidecar_fixture_is_what_the_exporter_writes(tmp_path, tiny_checkpoint):
    assert export_main(["--target", "tflite", "--checkpoint", str(tiny_checkpoint),
                        "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "dped_mobile_fp32.json").read_text())
    for key in VOLATILE:
        record.pop(key, None)
    _write_or_compare("sidecar.json", record)


THUMBNAIL_CASES = [(1, 1, 4), (5, 7, 8), (37, 53, 8), (64, 48, 16), (130, 17, 16)]  # height, width, size


def test_thumbnail_fixture_for_the_android_core():
    from artifacts.thumbnail import thumbnail

    cases = [{"height": h, "width": w, "size": s,
              "thumbnail": [float(v) for v in thumbnail(pattern_image(h, w), s).ravel()]}
             for h, w, s in THUMBNAIL_CASES]
    _write_or_compare("thumbnail.json", cases)
