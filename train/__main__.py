"""python -m train: train the toolkit's networks.

Examples:
  python -m train dped                                   # DPED+ on the built-in sample photos, 20K steps
  python -m train dped --steps 20                        # a two-minute smoke run
  python -m train dped --model dped --data ~/datasets/dped --phone iphone
  python -m train dped --out runs/dped_mobile --resume   # continue an interrupted run
  python -m train evaluate --model dped_mobile           # PSNR/SSIM of input and output on validation photos
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import types
import typing

from models import CheckpointError, list_models

from .data import DatasetError
from .dped import DPEDTrainConfig, TrainingDiverged, train_dped
from .evaluate import evaluate_model


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type) -> None:
    """One --flag per dataclass field, typed and documented from the field."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        if isinstance(kind, types.UnionType):  # "X | None"
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        helptext = f"{f.metadata.get('help', '')} (default: {f.default})"
        if kind is bool:
            parser.add_argument(flag, action="store_true", help=f.metadata.get("help"))
        else:
            parser.add_argument(flag, type=kind, default=f.default, help=helptext)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="task", required=True, metavar="{dped,evaluate}")
    dped = sub.add_parser("dped", help="train DPED or DPED+ (phone -> DSLR)")
    add_dataclass_args(dped, DPEDTrainConfig)
    dped.add_argument("--no-progress", action="store_true", help="no progress bar")
    ev = sub.add_parser("evaluate", help="PSNR/SSIM of a model on validation photos")
    ev.add_argument("--model", default="dped_mobile")
    ev.add_argument("--checkpoint", default=None, help="checkpoint file (default: shipped weights)")
    ev.add_argument("--data", default=None, help="paired folder or DPED layout (default: built-in photos)")
    ev.add_argument("--phone", default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    if args.model not in list_models():
        parser.error(f"unknown --model {args.model!r}; choose from: {', '.join(list_models())}")
    try:
        if args.task == "dped":
            fields = {f.name for f in dataclasses.fields(DPEDTrainConfig)}
            cfg = DPEDTrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
            summary = train_dped(cfg, progress=not args.no_progress)
        else:
            summary = evaluate_model(args.model, args.checkpoint, args.data, args.phone)
    except (TrainingDiverged, CheckpointError, DatasetError, FileExistsError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: the last checkpoint written is intact; continue with --resume --out RUN",
              file=sys.stderr)
        return 130
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
