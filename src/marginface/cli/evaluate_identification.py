"""``marginface evaluate-identification MODEL --lfw ROOT --out DIR``: the LFW 1:N protocol
(docs/evaluation.md) -> report.json (CMC, TPIR at FPIR, thresholds), cmc.png, det.png."""

from __future__ import annotations

import argparse
import json

from marginface.cli.options import add_embedding_options, check_outputs, flip_of
from marginface.eval.engines import ENGINES
from marginface.eval.identification_run import run_lfw_identification

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate-identification", help="1:N identification evaluation (LFW protocol)"
    )
    parser.add_argument("model", help="marginface model file")
    parser.add_argument("--lfw", required=True, help="LFW folder (images/, lfw_landmark.txt)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--initials", default=None,
                        help="only people whose names start with one of these letters (subset)")
    parser.add_argument("--engine", choices=ENGINES, default="torch")
    add_embedding_options(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    check_outputs((args.out, "--out", "dir"))
    report = run_lfw_identification(
        args.model,
        args.lfw,
        args.out,
        initials=list(args.initials) if args.initials else None,
        flip=flip_of(args),
        batch_size=args.batch_size,
        num_workers=args.workers,
        engine=args.engine,
        progress=not args.no_progress,
    )
    print(json.dumps({k: report[k] for k in ("gallery", "mated", "nonmated", "cmc")}))
    print(f"TPIR at FPIR: {report['tpir_at_fpir']}; wrote {args.out}/report.json")
    return 0
