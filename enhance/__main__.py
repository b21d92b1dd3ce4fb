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
import sys
import time
from artifacts.cli import run_main
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from artifacts import TARGETS, SidecarError, load, sidecar_for, target_of
from artifacts.tiling import enhance_tiled, padded
from photos import ImageError, read_uint8

from .postprocess import STEPS, postprocess


def load_enhancer(model: str, checkpoint: str | None, artifact: str | None,
                  threads: int | None) -> tuple[Callable[[np.ndarray], np.ndarray], int, int | None]:
    """(function on float32 (h, w, 3) tiles, halo, fixed tile size or None)."""
    if artifact:
        path = Path(artifact)
        target_of(path)  # ValueError naming the known suffixes
        if not path.exists():
            raise ValueError(f"{artifact}: no such artifact")
        sidecar = sidecar_for(path)
        if [t.name for t in sidecar.outputs] != ["enhanced"]:
            raise ValueError(f"{path.name} is not an enhancer (outputs: "
                             f"{', '.join(t.name for t in sidecar.outputs)}); enhance takes mdie or dped models")
        try:
            run = load(path, threads or 2)
        except RuntimeError as err:
            raise ValueError(str(err)) from None
        fixed = None if sidecar.resizable else sidecar.input.hw
        fn = padded(run, sidecar.size_multiple, fixed)
        return fn, sidecar.halo, (min(fixed) if fixed else None)
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m enhance", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="photos")
    p.add_argument("-o", "--output", required=True, help="output file (one input) or folder")
    p.add_argument("--model", default="dped_mobile")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--artifact", default=None, help=f"an exported {'/'.join(t.suffix for t in TARGETS.values())} "
                                                    f"file instead (its sidecar next to it)")
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
    except (ValueError, SidecarError) as err:  # includes models.CheckpointError
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
    sys.exit(run_main(main))
