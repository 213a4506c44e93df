"""``marginface evaluate MODEL_FILE --pairs SPEC --out DIR``: k-fold verification report (or,
for a set of one kind of pair, what it allows)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from marginface.cli.options import (
    add_center_crop_option,
    check_outputs,
    finite_float,
    non_negative_int,
    positive_int,
)
from marginface.eval.engines import ENGINES
from marginface.eval.model_report import run_evaluation
from marginface.eval.verification import VerificationReport

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="verification accuracy of a model file on LFW / a .bin / a pairs list",
        description="Embed the pairs' faces (aligned crops, aligned from --landmarks, or "
        "detected with --detect; other images are an error unless --center-crop), run the "
        "k-fold protocol (--n-folds, default 10) and write DIR/report.json, DIR/scores.csv and "
        "DIR/roc.png. A set of only same (or only different) pairs gets a report of what it "
        "allows: the rates at --threshold, the score range; no k-fold accuracy, ROC or TAR@FAR.",
    )
    parser.add_argument("model_file", help="a marginface model file (marginface.models.save_model)")
    parser.add_argument(
        "--pairs",
        required=True,
        help="lfw:DIR (images/, pairs.txt, lfw_landmark.txt), X.bin, "
        "or a pairs list 'path_a path_b 0|1' per line",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--flip",
        choices=["concat", "sum", "none"],
        default="concat",
        help="test-time horizontal flip: concatenate or sum the two embeddings",
    )
    parser.add_argument(
        "--subtract-mean",
        action="store_true",
        help="subtract the mean embedding of the other 9 folds (SphereFace)",
    )
    parser.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="leave out pairs with missing/undecodable images (counted in report)",
    )
    parser.add_argument("--n-folds", type=positive_int, default=None,
                        help="folds of a set without its own (default 10; LFW brings its own)")
    parser.add_argument("--threshold", type=finite_float, default=None,
                        help="also report accuracy, TAR and FAR at this cosine threshold (the "
                        "one accuracy a set of only same or only different pairs allows)")
    parser.add_argument("--landmarks", default=None, help="landmarks file (lfw_landmark layout)")
    parser.add_argument("--detect", action="store_true",
                        help="raw photos: align each image from its detected face (MTCNN); "
                        "landmarks are ignored; pairs whose image has no face are counted")
    parser.add_argument("--face", choices=["central", "largest"], default="central",
                        help="with --detect: which face of an image with several")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--workers", type=non_negative_int, default=2,
                        help="DataLoader decode/align workers")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch intra-op threads")
    parser.add_argument(
        "--engine",
        choices=list(ENGINES),
        default="torch",
        help="inference path: torch (BN folded, channels_last), bf16, onnxruntime, eager",
    )
    parser.add_argument("--no-progress", action="store_true")
    add_center_crop_option(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    check_outputs((args.out, "--out", "dir"))
    report = run_evaluation(
        args.model_file,
        args.pairs,
        args.out,
        flip=None if args.flip == "none" else args.flip,
        batch_size=args.batch_size,
        subtract_mean=args.subtract_mean,
        skip_bad_images=args.skip_bad_images,
        landmarks_file=args.landmarks,
        num_workers=args.workers,
        threads=args.threads,
        progress=not args.no_progress,
        engine=args.engine,
        detect=args.face if args.detect else None,
        n_folds=args.n_folds,
        threshold=args.threshold,
        center_crop=args.center_crop,
    )
    print(report.summary())
    if args.detect:
        found = json.loads((Path(args.out) / "report.json").read_text())["detection"]
        print(f"detection ({found['policy']} face): {found['with_face']} of {found['images']} "
              f"images with a face (faces per image {found['faces_per_image']}), "
              f"{found['no_face']} with none -> {found['no_face_pairs']} pairs left out")
    roc = ", roc.png" if isinstance(report, VerificationReport) else " (no ROC: one kind of pair)"
    print(f"wrote {args.out}/report.json, scores.csv{roc}")
    return 0
