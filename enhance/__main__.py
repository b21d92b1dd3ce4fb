"""python -m enhance: enhance photos of any size with a model or an exported artifact, tile by tile.

Examples:
  python -m enhance photo.jpg -o out.png                          # shipped dped_mobile, 256 px tiles
  python -m enhance a.jpg b.jpg -o enhanced/ --postprocess he,gamma
  python -m enhance photo.jpg -o out.png --artifact exported/dped_mobile_int8.tflite
  python -m enhance photo.jpg -o out.png --model dped --checkpoint runs/dped/best.pt --tile 256
  python -m enhance photo.jpg -o out.png --model mdie              # the intrinsic multi-domain enhancer
  python -m enhance photo.jpg -o out.png --reference pro.jpg --postprocess he,gamma   # MPSE phases 1, 2, 3
  python -m enhance photo.jpg -o out.png --reference auto --references pros/          # the recommender picks

MPSE (paper 3.1): phase 1 is the network above; --reference adds phase 2, the photo's style moved toward a
reference photo region by region (VGG-19 Gram losses weighted by a learned Λ, a content loss and the matting-
Laplacian photorealism term), optimised at --style-size and carried to full resolution as a local affine colour
transform; --postprocess he then equalizes each region of the --labels maps on its own (phase 3; with the default
k-means regions the photo is equalized as a whole). --reference auto lets the shipped
recommendation head choose among --references and prints its ranking. Regions come from --labels and
--reference-labels (integer PNG label maps from a segmenter of your choice, e.g. PSPNet's merged ADE20K classes)
or, by default, from one k-means over both photos (photos/regions.py). Without --vgg-weights (a torchvision
VGG-19 state dict) the losses run on seeded random VGG-19 weights; the command says which.

Tiles overlap by the model's receptive radius (the halo), so the result equals whole-image inference and memory
stays flat in the photo's size. Outputs are written under a temporary name and renamed when complete; an input is
never overwritten, nor an existing output unless --force. Photos declaring more than --max-pixels are refused
from their header, before decoding. Unreadable inputs are reported and skipped.

Exit status: 0 all enhanced; 1 an input, a reference or the model could not be read; 2 usage error (checked
before any work); 130 interrupted.
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
from photos.io import IMAGE_SUFFIXES, list_images

from .postprocess import STEPS, postprocess
from models.style import StyleConfig


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


def check_style_options(args: argparse.Namespace) -> StyleConfig | None:
    """Phase 2's options, checked before any work (ValueError naming the option); None without --reference."""
    flags = {"--references": args.references, "--labels": args.labels, "--reference-labels": args.reference_labels,
             "--recommender": args.recommender, "--vgg-weights": args.vgg_weights}
    if args.reference is None:
        given = [flag for flag, value in flags.items() if value]
        if given:
            raise ValueError(f"{given[0]} needs --reference (a photo, or auto)")
        return None
    if args.reference == "auto":
        if not args.references:
            raise ValueError("--reference auto needs --references DIR, the folder to choose from")
        if not Path(args.references).is_dir():
            raise ValueError(f"--references {args.references}: not a folder")
        if not list_images(args.references):
            raise ValueError(f"--references {args.references}: no photos ({', '.join(IMAGE_SUFFIXES)})")
    else:
        if args.references:
            raise ValueError("--references is for --reference auto; give one or the other")
        if not Path(args.reference).is_file():
            raise ValueError(f"--reference {args.reference}: no such file")
    if (args.labels is None) != (args.reference_labels is None):
        raise ValueError("--labels and --reference-labels go together (the same value means the same class in both)")
    if args.labels and (len(args.inputs) > 1 or args.reference == "auto"):
        raise ValueError("--labels describe one photo and one reference: give one input and a --reference file")
    for flag in ("--labels", "--reference-labels", "--recommender", "--vgg-weights"):
        value = flags[flag]
        if value and not Path(value).is_file():
            raise ValueError(f"{flag} {value}: no such file")
    if args.regions < 1:
        raise ValueError(f"--regions must be a positive integer, got {args.regions}")
    return StyleConfig(steps=args.style_steps, size=args.style_size, beta=args.style_weight,
                       gamma=args.realism_weight)


class StylePhase:
    """MPSE phase 2 for each photo: the reference (given, or recommended from a folder), then style_photo."""

    def __init__(self, args: argparse.Namespace, config: StyleConfig):
        from models.vgg import VGGTrunk

        self.args, self.config = args, config
        self.trunk = VGGTrunk(args.vgg_weights)
        print(f"style losses on {self.trunk.describe()}")
        self.references: dict[str, np.ndarray] = {}
        self.recommender = None
        if args.reference != "auto":
            try:
                self.references[args.reference] = read_uint8(args.reference).astype(np.float32) / 255
            except ImageError as err:
                raise ValueError(f"--reference: {err}") from None
        else:
            from models.recommend import describe_references, load_recommender

            self.recommender = load_recommender(args.recommender, args.vgg_weights)
            for path in list_images(args.references):
                try:
                    self.references[str(path)] = read_uint8(path).astype(np.float32) / 255
                except ImageError as err:
                    print(f"warning: skipped reference {err}", file=sys.stderr)
            if not self.references:
                raise ValueError(f"--references {args.references}: no readable photo")
            self.descriptors = describe_references(self.recommender, self.references)

    def __call__(self, photo: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        from models.style import style_photo

        args = self.args
        if self.recommender is not None:
            from models.recommend import rank_references

            ranking = rank_references(self.recommender, photo, self.descriptors)
            name = ranking[0][0]
            print("reference: " + "; ".join(f"{Path(n).name} {d:.3f} (D_sem {s:.1f})" for n, d, s in ranking[:3])
                  + f"  -> {Path(name).name}")
            reference = self.references[name]
        else:
            reference = self.references[args.reference]
        labels = ref_labels = None
        if args.labels:
            from photos.regions import read_labels

            labels = read_labels(args.labels, photo.shape[:2])
            ref_labels = read_labels(args.reference_labels, reference.shape[:2])
        styled = style_photo(photo, reference, self.trunk, self.config, args.regions, labels, ref_labels,
                             progress=sys.stderr.isatty())
        shares = ", ".join(f"{(styled.labels == r).mean():.0%}" for r in range(styled.lam.shape[1]))
        print(f"style: {self.config.steps} steps at {self.config.size} px in {styled.seconds:.1f} s; "
              f"regions {shares}; Λ per layer (relu1_1..relu5_1) {np.round(styled.lam, 2).tolist()}")
        # per-region equalization (phase 3) needs semantic regions, the --labels map at the photo's size: with the
        # k-means regions it would cut the photo along colour boundaries, so their photos are equalized as a whole
        return styled.image, labels


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
    st = p.add_argument_group("MPSE phase 2: style toward a reference")
    st.add_argument("--reference", default=None, help="a reference photo, or 'auto' to pick one from --references")
    st.add_argument("--references", default=None, help="folder of reference photos for --reference auto")
    st.add_argument("--recommender", default=None, help="recommendation head (default: the shipped one)")
    st.add_argument("--style-steps", type=int, default=StyleConfig.steps,
                    help=f"optimisation steps (default {StyleConfig.steps})")
    st.add_argument("--style-size", type=int, default=StyleConfig.size,
                    help=f"working size, long side in pixels (default {StyleConfig.size})")
    st.add_argument("--style-weight", type=float, default=StyleConfig.beta, help="β (default: the paper's 100)")
    st.add_argument("--realism-weight", type=float, default=StyleConfig.gamma, help="γ (default: the paper's 11)")
    st.add_argument("--regions", type=int, default=3, help="regions found when no label maps are given (default 3)")
    st.add_argument("--labels", default=None, help="integer label map (PNG) of the input photo")
    st.add_argument("--reference-labels", default=None, help="integer label map (PNG) of the reference")
    st.add_argument("--vgg-weights", default=None, help="torchvision VGG-19 state dict for the style losses")
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
        style = check_style_options(args)
    except ValueError as err:
        p.print_usage(sys.stderr)
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        fn, halo, fixed, thumbnail = load_enhancer(args.model, args.checkpoint, args.artifact, args.threads)
        tile = fixed or args.tile
        if tile <= 2 * halo:
            raise ValueError(f"--tile {tile} must be larger than twice the halo ({halo})")
        phase2 = StylePhase(args, style) if style else None
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
        labels = None
        if phase2:
            try:
                styled, labels = phase2(result.astype(np.float32) / 255)
            except ValueError as err:  # an unreadable reference or label map
                print(f"error: {err}", file=sys.stderr)
                status = 1
                continue
            result = np.round(styled * 255).astype(np.uint8)
        if steps:
            result = np.round(postprocess(result.astype(np.float32) / 255, steps, labels) * 255).astype(np.uint8)
        write_photo(result, dst)
        mp = image.shape[0] * image.shape[1] / 1e6
        print(f"{src} -> {dst}  {image.shape[1]}x{image.shape[0]} ({mp:.1f} MP)  {time.perf_counter() - t0:.1f} s")
    return status


if __name__ == "__main__":
    sys.exit(run_main(main))
