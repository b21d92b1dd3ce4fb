"""python -m train: train the toolkit's networks.

Examples:
  python -m train dped                                   # DPED+ on the built-in sample photos, 20K steps
  python -m train dped --steps 20                        # a two-minute smoke run
  python -m train dped --model dped --data ~/datasets/dped --phone iphone
  python -m train dped --out runs/dped_mobile --resume   # continue an interrupted run
  python -m train dped --device cuda --amp               # a GPU, bfloat16/float16 autocast
  torchrun --nproc_per_node 4 -m train dped --batch 64   # data-parallel (DDP): 4 GPUs, or 4 CPU processes (gloo)
  python -m train dped --model dped_mobile_s --qat --teacher dped_mobile_s --w-texture 0 --steps 300 --batch 16
                                                         # QAT: fine-tune the shipped weights as int8 computes
  python -m train evaluate --model dped_mobile           # PSNR/SSIM of input and output on validation photos
  python -m train evaluate --artifact exported/dped_mobile_int8.tflite   # an export's drop against fp32, same sets
  python -m train intrinsic                              # mobile decomposer F + composer F' (synthetic + photos)
  python -m train intrinsic --data ~/sintel/training     # supervised phase on an MPI-Sintel-style folder
  python -m train mdie                                   # multi-domain enhancer on the shipped F and F'
  python -m train mdie --noise ~/dnd --color ~/fivek      # your own domain datasets
  python -m train mdie --qat --batch 8 --patch 128 --val-every 50   # QAT of the shipped pipeline
  python -m train recommend                              # MPSE's reference recommendation head

Exit status: 0 done, 1 failed (data, checkpoint, divergence), 2 bad option (including --device cuda without
CUDA), 130 interrupted (the last checkpoint is intact: --resume).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import types
import typing

import torch

from artifacts.cli import INTERRUPTED, run_main
from models import CheckpointError, list_models

from .data import DatasetError
from .distributed import Context, check_device, torchrun_env
from .dped import DPEDTrainConfig, train_dped
from .loop import TrainingDiverged
from .evaluate import evaluate_artifact, evaluate_model
from .intrinsic import IntrinsicTrainConfig, train_intrinsic
from .mdie import MDIETrainConfig, train_mdie
from .recommend import RecommendTrainConfig, train_recommend

TASKS = {"dped": (DPEDTrainConfig, train_dped), "intrinsic": (IntrinsicTrainConfig, train_intrinsic),
         "mdie": (MDIETrainConfig, train_mdie), "recommend": (RecommendTrainConfig, train_recommend)}


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type) -> None:
    """One --flag per dataclass field, typed and documented from the field."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        if isinstance(kind, types.UnionType):  # "X | None"
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        shown = f.metadata.get("default", f.default)   # a default that depends on other options says so
        helptext = f"{f.metadata.get('help', '')} (default: {shown})".replace("%", "%%")
        if kind is bool:
            parser.add_argument(flag, action="store_true", help=f.metadata.get("help", "").replace("%", "%%"))
        else:
            parser.add_argument(flag, type=kind, default=f.default, help=helptext)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="task", required=True, metavar="{dped,intrinsic,mdie,recommend,evaluate}")
    helps = {"dped": "train DPED or DPED+ (phone -> DSLR)",
             "intrinsic": "train the intrinsic decomposer F and composer F' (supervised, then self-supervised)",
             "mdie": "train the multi-domain enhancer (colour, noise, texture) between F and F'",
             "recommend": "train MPSE's reference recommendation head (phase 2's style reference)"}
    for task, (cfg_cls, _) in TASKS.items():
        p = sub.add_parser(task, help=helps[task], description=sys.modules[_.__module__].__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        add_dataclass_args(p, cfg_cls)
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
    ev = sub.add_parser("evaluate", help="PSNR/SSIM of a model on validation photos")
    ev.add_argument("--model", default="dped_mobile")
    ev.add_argument("--checkpoint", default=None, help="checkpoint file (default: shipped weights)")
    ev.add_argument("--artifact", default=None,
                    help="an exported enhancer (.tflite, .onnx, ...): its PSNR/SSIM and drop against the PyTorch "
                         "fp32 model it was made from (--checkpoint, default shipped weights), on the same sets")
    ev.add_argument("--data", default=None, help="paired folder or DPED layout (default: built-in photos)")
    ev.add_argument("--phone", default=None)
    ev.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda or mps")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    if getattr(args, "model", None) is not None and args.model not in list_models():
        parser.error(f"unknown --model {args.model!r}; choose from: {', '.join(list_models())}")
    if args.task == "evaluate":
        try:
            check_device(args.device)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    if args.task in TASKS:
        cfg_cls, train = TASKS[args.task]
        fields = {f.name for f in dataclasses.fields(cfg_cls)}
        try:  # every option checked before any work
            cfg = cfg_cls(**{k: v for k, v in vars(args).items() if k in fields})
            Context(torch.device("cpu"), world_size=torchrun_env()[1]).shard(cfg.batch)  # splits across torchrun?
        except ValueError as err:  # one line naming the option (under torchrun, from rank 0)
            if torchrun_env()[0] == 0:
                print(f"error: {err}", file=sys.stderr)
            return 2
    try:
        if args.task in TASKS:
            summary = train(cfg, progress=not args.no_progress)
        elif args.artifact:
            summary = evaluate_artifact(args.artifact, args.checkpoint, args.data, args.phone)
        else:
            summary = evaluate_model(args.model, args.checkpoint, args.data, args.phone, device=args.device)
    except (TrainingDiverged, CheckpointError, DatasetError, FileExistsError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: the last checkpoint written is intact; continue with --resume --out RUN",
              file=sys.stderr)
        return INTERRUPTED
    if torchrun_env()[0] == 0:  # under torchrun, rank 0 speaks for the run
        print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
