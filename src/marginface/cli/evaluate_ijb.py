"""``marginface evaluate-ijb MODEL --root IJBC --out DIR``: the IJB-B/C template protocols
(1:1 TAR at FAR; 1:N against G1 and G2 where the CSVs exist). See docs/evaluation.md."""

from __future__ import annotations

import argparse
import json

from marginface.cli.options import check_outputs, non_negative_int, positive_int
from marginface.eval.engines import ENGINES
from marginface.eval.ijb.run import evaluate_ijb
from marginface.eval.model_report import load_model_file

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate-ijb", help="IJB-B / IJB-C template evaluation")
    parser.add_argument("model", help="marginface model file")
    parser.add_argument("--root", required=True, help="folder with loose_crop/ and meta/")
    parser.add_argument("--name", choices=["ijbb", "ijbc"], default="ijbc")
    parser.add_argument("--out", required=True, help="output folder (report.json, roc.png)")
    parser.add_argument("--flip", choices=["sum", "none"], default="sum")
    parser.add_argument("--norm", choices=["quality", "normalize"], default="quality",
                        help="quality: keep each image's feature norm as its weight")
    parser.add_argument("--no-detector-score", action="store_true",
                        help="do not weight images by their detector score")
    parser.add_argument("--engine", choices=ENGINES, default="torch")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--workers", type=non_negative_int, default=2)
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    check_outputs((args.out, "--out", "dir"))
    report = evaluate_ijb(
        load_model_file(args.model),
        args.root,
        args.out,
        name=args.name,
        flip=None if args.flip == "none" else args.flip,
        norm=args.norm,
        detector_score=not args.no_detector_score,
        batch_size=args.batch_size,
        num_workers=args.workers,
        engine=args.engine,
        progress=not args.no_progress,
    )
    for key in ("verification", "identification"):
        if key in report:
            print(key, json.dumps(report[key].get("tar_at_far_nearest", report[key].get("mean"))))
    print(f"wrote {args.out}/report.json")
    return 0
