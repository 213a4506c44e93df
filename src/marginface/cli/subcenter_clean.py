"""``marginface subcenter-clean RUN_DIR -o outliers.txt``: Sub-center ArcFace's cleaning step."""

from __future__ import annotations

import argparse
from pathlib import Path

from marginface.cli.options import check_outputs, finite_float, positive_int

__all__ = ["register"]


def _run(args: argparse.Namespace) -> int:
    check_outputs((args.output, "--output", "file"))
    from marginface.train.subcenter_clean import clean_run

    report = clean_run(args.run_dir, args.output, threshold=args.threshold,
                       batch_size=args.batch_size, device=args.device)
    print(f"{report.outliers} of {report.samples} samples beyond {report.threshold:g} degrees "
          f"(checkpoint {report.checkpoint}); wrote {report.output} "
          f"(train on the rest with data.exclude_list: {report.output})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "subcenter-clean",
        help="list the training samples far from their class's dominant sub-centre",
        description="Sub-center ArcFace (ECCV 2020) cleaning: embed the training data of a "
                    "subcenter_arcface run with its newest checkpoint, find each class's dominant "
                    "sub-centre and write the samples beyond the threshold angle.",
    )
    parser.add_argument("run_dir", type=Path, help="a training run directory (checkpoints/)")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="the outlier list to write (data.exclude_list)")
    parser.add_argument("--threshold", type=finite_float, default=75.0,
                        help="angle in degrees to the dominant sub-centre (default 75)")
    parser.add_argument("--batch-size", type=positive_int, default=256, help="embedding batch size")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.set_defaults(func=_run)
