"""python -m enhance: enhance photos of any size with a model or an exported artifact, tile by tile.

Examples:
  python -m enhance photo.jpg -o out.png                          # shipped dped_mobile, 256 px tiles
  python -m enhance a.jpg b.jpg -o enhanced/ --postprocess he,gamma
  python -m enhance photo.jpg -o out.png --artifact exported/dped_mobile_int8.tflite
  python -m enhance photo.jpg -o out.png --model dped --checkpoint runs/dped/best.pt --tile 256
  python -m enhance photo.jpg -o out.png --model mdie              # the intrinsic multi-domain enhancer

Tiles overlap by the model's receptive radius (the halo), so the result equals whole-image inference and memory
stays flat in the photo's size. Unreadable inputs are reported and skipped; the exit status is 1 if any failed.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from .images import ImageError, MAX_PIXELS
from .postprocess import STEPS, postprocess
from .tiling import enhance_tiled, padded

ARTIFACT_SUFFIXES = {".tflite": "litert", ".onnx": "onnxruntime", ".mlpackage": "coreml", ".engine": "tensorrt"}


def load_enhancer(model: str, checkpoint: str | None, artifact: str | None,
                  threads: int | None) -> tuple[Callable[[np.ndarray], np.ndarray], int, int | None]:
    """(function on float32 (h, w, 3) tiles, halo, fixed tile size or None)."""
    if artifact:
        path = Path(artifact)
        runtime = ARTIFACT_SUFFIXES.get(path.suffix)
        if runtime is None or not path.exists():
            raise ValueError(f"{artifact}: not an exported artifact ({', '.join(ARTIFACT_SUFFIXES)})")
        sidecar = _sidecar(path)
        from benchmark.runners import runner

        mod = runner(runtime)
        reason = mod.unavailable()
        if reason:
            raise ValueError(f"cannot run {path.name} here: {reason}")
        outputs = sidecar.get("outputs", [sidecar.get("output", {})])
        if len(outputs) != 1 or outputs[0].get("name", "enhanced") != "enhanced":
            raise ValueError(f"{path.name} is not an enhancer (outputs: "
                             f"{', '.join(o.get('name', '?') for o in outputs)}); enhance takes mdie or dped models")
        spec = sidecar["input"]
        hw = spec["shape"][1:3] if spec.get("layout", "NHWC") == "NHWC" else spec["shape"][2:4]
        fixed = None if spec.get("resizable", True) else tuple(int(v) for v in hw)
        fn = padded(mod.load(str(path), threads or 2), int(spec.get("size_multiple", 1)), fixed)
        return fn, int(sidecar["halo"]), (min(fixed) if fixed else None)
    import torch

    from models import create_model, fold_batchnorm, keep_freed_memory

    keep_freed_memory()
    if threads:
        torch.set_num_threads(threads)
    net = fold_batchnorm(create_model(model, pretrained=checkpoint is None, checkpoint=checkpoint))
    if not _is_enhancer(net):
        enhancers = [m for m in _model_names() if _is_enhancer(create_model(m))]
        raise ValueError(f"{model} is not a photo enhancer; choose from: {', '.join(enhancers)}")

    @torch.no_grad()
    def run(tile: np.ndarray) -> np.ndarray:
        return net(torch.from_numpy(tile).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()

    return run, net.contract.halo, None


def _is_enhancer(net) -> bool:
    """Photo in, one photo out: what enhance can tile (not the decomposer, composer or generator)."""
    return net.contract.channels == 3 and net.contract.output_names == ("enhanced",)


def _model_names() -> list[str]:
    from models import list_models

    return list_models()


def _sidecar(path: Path) -> dict:
    stem = path.name[: -len(path.suffix)]
    for name in (f"{stem}.json", f"{path.name}.json"):
        if (path.parent / name).exists():
            return json.loads((path.parent / name).read_text())
    raise ValueError(f"{path}: its sidecar JSON ({stem}.json) is missing; it holds the halo and input spec")


def read_uint8(path: Path) -> np.ndarray:
    """Photo as uint8 (H, W, 3): 4 bytes less per pixel than float, for 12+ MP photos."""
    from .images import load_image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(path) as img:
            if img.mode in ("RGB", "L", "RGBA", "P", "LA", "CMYK", "YCbCr"):
                from PIL import ImageOps

                img.load()
                return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageError(f"{path}: not a readable image ({str(err).strip() or type(err).__name__})") from None
    return np.round(load_image(path) * 255).astype(np.uint8)  # 16-bit and float modes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m enhance", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="photos")
    p.add_argument("-o", "--output", required=True, help="output file (one input) or folder")
    p.add_argument("--model", default="dped_mobile")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--artifact", default=None, help="an exported .tflite/.onnx/.mlpackage/.engine instead")
    p.add_argument("--tile", type=int, default=256,
                   help="tile size in pixels, halo included (default 256: a third of the peak memory of 512 "
                        "for the same time on a 12 MP photo)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--postprocess", default="", help=f"comma list of {', '.join(STEPS)} (after the network)")
    args = p.parse_args(argv)
    steps = [s for s in args.postprocess.split(",") if s]
    bad = [s for s in steps if s not in STEPS]
    known = None if args.artifact else _model_names()  # an artifact run never imports PyTorch
    if bad or (known is not None and args.model not in known):
        p.print_usage(sys.stderr)
        what = f"post-processing step {bad[0]!r}; choose from: {', '.join(STEPS)}" if bad else \
            f"model {args.model!r}; choose from: {', '.join(known)}"
        print(f"error: unknown {what}", file=sys.stderr)
        return 2
    out = Path(args.output)
    many = len(args.inputs) > 1 or out.is_dir() or not out.suffix
    try:
        fn, halo, fixed = load_enhancer(args.model, args.checkpoint, args.artifact, args.threads)
        tile = fixed or args.tile
        if tile <= 2 * halo:
            raise ValueError(f"--tile {tile} must be larger than twice the halo ({halo})")
    except ValueError as err:  # includes models.CheckpointError
        print(f"error: {err}", file=sys.stderr)
        return 1
    status = 0
    for name in args.inputs:
        src = Path(name)
        dst = out / f"{src.stem}_enhanced.png" if many else out
        t0 = time.perf_counter()
        try:
            image = read_uint8(src)
        except ImageError as err:
            print(f"error: {err}", file=sys.stderr)
            status = 1
            continue
        result = enhance_tiled(image, fn, tile, halo)
        if steps:
            result = np.round(postprocess(result.astype(np.float32) / 255, steps) * 255).astype(np.uint8)
        dst.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(result).save(dst)
        mp = image.shape[0] * image.shape[1] / 1e6
        print(f"{src} -> {dst}  {image.shape[1]}x{image.shape[0]} ({mp:.1f} MP)  {time.perf_counter() - t0:.1f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
