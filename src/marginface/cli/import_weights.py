"""``marginface import-weights CKPT --model NAME --input-size HxW -o MODEL.safetensors``."""

from __future__ import annotations

import argparse
from pathlib import Path

from marginface.cli.options import check_outputs, finite_float, positive_int

__all__ = ["register", "parse_size"]


def parse_size(text: str) -> tuple[int, int]:
    """``112x96`` -> (112, 96): height x width."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"--input-size expects HxW (e.g. 112x96), got {text!r}")
    return int(parts[0]), int(parts[1])


def _run(args: argparse.Namespace) -> int:
    check_outputs((None if args.dry_run else args.output, "--output", "file"))
    from marginface.models.import_weights import import_checkpoint_file

    preprocessing = {}
    if args.mean is not None:
        preprocessing["mean"] = (args.mean,) * 3
    if args.std is not None:
        preprocessing["std"] = (args.std,) * 3
    report = import_checkpoint_file(args.checkpoint, args.model, args.input_size, args.output,
                                    embedding_dim=args.embedding_dim, key=args.key,
                                    dry_run=args.dry_run, preprocessing=preprocessing)
    if args.dry_run or args.verbose:
        print(report.table())
    else:
        print(f"{report.num_tensors} tensors, {report.num_values} values imported")
    if not args.dry_run:
        print(f"wrote {args.output}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "import-weights", help="turn a foreign PyTorch checkpoint into a marginface model file",
        description="Pair a foreign checkpoint's tensors with a marginface model's by order and "
                    "shape (marginface.models.import_state_dict) and write a model file. "
                    "--dry-run prints the mapping and writes nothing.")
    p.add_argument("checkpoint", type=Path, help="torch checkpoint (.ckpt/.pt/.pth)")
    p.add_argument("--model", required=True, help="marginface model name (create_model)")
    p.add_argument("--input-size", type=parse_size, required=True, metavar="HxW")
    p.add_argument("--embedding-dim", type=positive_int,
                   help="embedding size (default: the model's)")
    p.add_argument("--key", help="the checkpoint's key holding the state dict (default: found)")
    p.add_argument("--mean", type=finite_float, help="preprocessing mean stored with the model")
    p.add_argument("--std", type=finite_float, help="preprocessing std stored with the model")
    p.add_argument("-o", "--output", type=Path, help="model file to write (.safetensors)")
    p.add_argument("--dry-run", action="store_true", help="print the mapping, write nothing")
    p.add_argument("-v", "--verbose", action="store_true", help="print the mapping too")
    p.set_defaults(func=_run)
