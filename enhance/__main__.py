"""python -m enhance: enhance photos of any size with a model or an exported artifact, tile by tile.

Examples:
  python -m enhance photo.jpg -o out.png                          # shipped dped_mobile, 256 px tiles
  python -m enhance a.jpg b.jpg -o enhanced/ --postprocess he,gamma
  python -m enhance photo.jpg -o out.png --artifact exported/dped_mobile_int8.tflite
  python -m enhance photo.jpg -o out.png --model dped --checkpoint runs/dped/best.pt --tile 256
  python -m enhance photo.jpg -o out.png --model mdie              # the intrinsic multi-domain enhancer

Tiles overlap by the model's receptive radius (the halo), so the result equals whole-image inference and memory
stays flat in the photo's size. Outputs are written under a temporary name and renamed when complete; an input is
never overwritten, nor an existing output unless --force. Photos declaring more than --max-pixels are refused
from their header, before decoding. Unreadable inputs are reported and skipped.

Exit status: 0 all enhanced; 1 an input or the model could not be read; 2 usage error (checked before any work);
130 interrupted.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from artifacts.cli import run_main
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from artifacts import TARGETS, load, sidecar_for, target_of
from artifacts.tiling import enhance_tiled, padded
from photos import DEFAULT_MAX_PIXELS, ImageError, read_uint8, set_max_pixels

from .postprocess import STEPS, postprocess


def load_enhancer(model: str, checkpoint: str | None, artifact: str | None,
                  threads: int | None) -> tuple[Callable[..., np.ndarray], int, int | None, int]:
    """(function on float32 (h, w, 3) tiles, halo, fixed tile size or None, thumbnail size: 0 unless the model
    is image-adaptive, when the function also takes ``thumbnail=`` the whole photo's)."""
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
        thumb = sidecar.thumbnail.hw[0] if sidecar.thumbnail else 0
        return fn, sidecar.halo, (min(fixed) if fixed else None), thumb
    import torch

    from models import create_model, fold_batchnorm, keep_freed_memory

    keep_freed_memory()
    if threads:
        torch.set_num_threads(threads)
    net = fold_batchnorm(create_model(model, pretrained=checkpoint is None, checkpoint=checkpoint))
    if not _is_enhancer(net):
        enhancers = [m for m in _model_names() if _is_enhancer(create_model(m))]
        raise ValueError(f"{model} is not a photo enhancer; choose from: {', '.join(enhancers)}")

    def nchw(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).permute(2, 0, 1)[None]

    @torch.no_grad()
    def run(tile: np.ndarray, thumbnail: np.ndarray | None = None) -> np.ndarray:
        extra = [nchw(thumbnail)] if thumbnail is not None else []
        return net(nchw(tile), *extra)[0].permute(1, 2, 0).numpy()

    return run, net.contract.halo, None, net.contract.thumbnail or 0


def _is_enhancer(net) -> bool:
    """Photo in, one photo out: what enhance can tile (not the decomposer, composer or generator)."""
    return net.contract.channels == 3 and net.contract.output_names == ("enhanced",)


def _model_names() -> list[str]:
    from models import list_models

    return list_models()


@functools.lru_cache(maxsize=1)
def writable_suffixes() -> dict[str, str]:
    """File suffix -> Pillow format, for the formats Pillow can write."""
    Image.init()
    return {ext: fmt for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE}


def plan_outputs(inputs: list[str], output: str, force: bool) -> list[tuple[Path, Path]]:
    """(input, output file) pairs, checked before any work. One input and an output with a suffix: that file.
    Otherwise a folder of ``<stem>_enhanced.png`` files, made unique within the batch (``a_enhanced-1.png`` when
    a.jpg and a.png both come). Refuses (ValueError) an output that is an input, an unwritable suffix, a folder
    that is a file, and an existing file unless ``force``."""
    out = Path(output)
    many = len(inputs) > 1 or out.is_dir() or not out.suffix
    pairs, taken = [], set()
    for name in inputs:
        src = Path(name)
        if not many:
            dst = out
        else:
            dst, n = out / f"{src.stem}_enhanced.png", 0
            while dst in taken:
                n += 1
                dst = out / f"{src.stem}_enhanced-{n}.png"
        taken.add(dst)
        pairs.append((src, dst))
    suffixes = writable_suffixes()
    if not many and out.suffix.lower() not in suffixes:
        raise ValueError(f"-o {out}: Pillow cannot write {out.suffix!r} files; use .png (lossless), .jpg, .tif "
                         f"or .webp")
    folder = out if many else out.parent
    for parent in [folder, *folder.parents]:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"-o {out}: {parent} is a file, not a folder")
    sources = {src.resolve() for src, _ in pairs if src.exists()}
    for src, dst in pairs:
        if dst.resolve() in sources:
            raise ValueError(f"-o {dst} is an input photo: it would be overwritten; choose another output")
        if dst.exists() and not force:
            raise ValueError(f"{dst} already exists; pass --force to replace it")
    return pairs


def write_photo(image: np.ndarray, dst: Path) -> None:
    """Save through a temporary file in the same folder, renamed when complete."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.partial{dst.suffix}")
    try:
        Image.fromarray(image).save(tmp, format=writable_suffixes()[dst.suffix.lower()])
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m enhance", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="photos")
    p.add_argument("-o", "--output", required=True,
                   help="output file (one input; its suffix picks the format) or folder (<name>_enhanced.png each, "
                        "numbered when names collide)")
    p.add_argument("--force", action="store_true", help="replace output files that already exist (never an input)")
    p.add_argument("--model", default="dped_mobile")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--artifact", default=None, help=f"an exported {'/'.join(t.suffix for t in TARGETS.values())} "
                                                    f"file instead (its sidecar next to it)")
    p.add_argument("--tile", type=int, default=256,
                   help="tile size in pixels, halo included (default 256: a third of the peak memory of 512 "
                        "for the same time on a 12 MP photo)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help=f"refuse photos larger than this, from their header (default {DEFAULT_MAX_PIXELS:,})")
    p.add_argument("--postprocess", default="", help=f"comma list of {', '.join(STEPS)} (after the network)")
    args = p.parse_args(argv)
    steps = [s for s in args.postprocess.split(",") if s]
    known = None if args.artifact else _model_names()  # an artifact run never imports PyTorch
    try:
        if any(s not in STEPS for s in steps):
            raise ValueError(f"unknown post-processing step {next(s for s in steps if s not in STEPS)!r}; "
                             f"choose from: {', '.join(STEPS)}")
        if known is not None and args.model not in known:
            raise ValueError(f"unknown model {args.model!r}; choose from: {', '.join(known)}")
        for flag, value in (("--tile", args.tile), ("--threads", args.threads)):
            if value is not None and value < 1:
                raise ValueError(f"{flag} must be a positive integer, got {value}")
        set_max_pixels(args.max_pixels)
        pairs = plan_outputs(args.inputs, args.output, args.force)
    except ValueError as err:
        p.print_usage(sys.stderr)
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        fn, halo, fixed, thumbnail = load_enhancer(args.model, args.checkpoint, args.artifact, args.threads)
        tile = fixed or args.tile
        if tile <= 2 * halo:
            raise ValueError(f"--tile {tile} must be larger than twice the halo ({halo})")
    except ValueError as err:  # SidecarError and models.CheckpointError included
        print(f"error: {err}", file=sys.stderr)
        return 1
    status = 0
    for src, dst in pairs:
        t0 = time.perf_counter()
        try:
            image = read_uint8(src)
        except ImageError as err:
            print(f"error: {err}", file=sys.stderr)
            status = 1
            continue
        result = enhance_tiled(image, fn, tile, halo, thumbnail=thumbnail)
        if steps:
            result = np.round(postprocess(result.astype(np.float32) / 255, steps) * 255).astype(np.uint8)
        write_photo(result, dst)
        mp = image.shape[0] * image.shape[1] / 1e6
        print(f"{src} -> {dst}  {image.shape[1]}x{image.shape[0]} ({mp:.1f} MP)  {time.perf_counter() - t0:.1f} s")
    return status


if __name__ == "__main__":
    sys.exit(run_main(main))
