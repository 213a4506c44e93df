"""``marginface verify A.jpg B.jpg --model MODEL_FILE``: cosine score and same/different."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from marginface.cli.options import add_center_crop_option, finite_float
from marginface.data.lfw import read_landmarks
from marginface.errors import UserInputError
from marginface.eval.images import verify_images
from marginface.eval.model_report import load_model_file
from marginface.inputs import finite_number, read_json

__all__ = ["register"]


def _points(values: list[float] | None, option: str) -> np.ndarray | None:
    if values is None:
        return None
    if len(values) != 10:
        raise ValueError(f"{option} needs 10 numbers (x y of 5 points), got {len(values)}")
    return np.asarray(values, dtype=np.float64).reshape(5, 2)


def _lookup(table: dict[str, np.ndarray], image: str) -> np.ndarray:
    path = Path(image).as_posix()
    matches = [key for key in table if path == key or path.endswith("/" + key)]
    if not matches:
        raise ValueError(f"--landmarks file has no entry for image {image}")
    return table[max(matches, key=len)]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "verify", help="are two face images the same person? prints score and decision"
    )
    parser.add_argument("image_a")
    parser.add_argument("image_b")
    parser.add_argument("--model", required=True, help="marginface model file")
    parser.add_argument(
        "--landmarks-a",
        type=finite_float,
        nargs=10,
        default=None,
        metavar="V",
        help="x1 y1 ... x5 y5 of image A (otherwise it must be an aligned crop)",
    )
    parser.add_argument("--landmarks-b", type=finite_float, nargs=10, default=None, metavar="V")
    parser.add_argument(
        "--landmarks",
        default=None,
        help="landmarks file (lfw_landmark layout): the entry whose path the image path ends with",
    )
    parser.add_argument(
        "--threshold", type=finite_float, default=None, help="cosine threshold: same iff score > T"
    )
    parser.add_argument(
        "--report", default=None, help="take the threshold from an evaluate report.json"
    )
    parser.add_argument("--detect", action="store_true",
                        help="raw photos: detect (MTCNN) and align the face; landmarks ignored")
    parser.add_argument("--face", choices=["central", "largest"], default="central",
                        help="with --detect: which face of an image with several")
    parser.add_argument("--flip", choices=["concat", "sum", "none"], default="concat")
    add_center_crop_option(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    threshold = args.threshold
    if threshold is None and args.report:
        report = read_json(args.report, "--report")
        if isinstance(report, dict) and report.get("one_sided"):
            raise UserInputError(f"--report {args.report}: its pair set had one kind of pair "
                                 "only, so no threshold was learned; give --threshold T")
        if not isinstance(report, dict) or "threshold" not in report:
            raise UserInputError(f"--report {args.report}: no 'threshold' (expected the "
                                 "report.json of marginface evaluate)")
        threshold = finite_number(report["threshold"], f"--report {args.report}: threshold")
    landmarks_a = _points(args.landmarks_a, "--landmarks-a")
    landmarks_b = _points(args.landmarks_b, "--landmarks-b")
    if args.landmarks and not args.detect:
        table = read_landmarks(args.landmarks)
        landmarks_a = landmarks_a if landmarks_a is not None else _lookup(table, args.image_a)
        landmarks_b = landmarks_b if landmarks_b is not None else _lookup(table, args.image_b)
    result = verify_images(
        load_model_file(args.model),
        args.image_a,
        args.image_b,
        landmarks_a=landmarks_a,
        landmarks_b=landmarks_b,
        threshold=threshold,
        flip=None if args.flip == "none" else args.flip,
        detect=args.face if args.detect else None,
        center_crop=args.center_crop,
    )
    print(f"score {result.score:.4f}")
    if result.same is None:
        print("decision: none (give --threshold T or --report report.json)")
    else:
        print(f"decision: {'same' if result.same else 'different'} (threshold {threshold:.4f})")
    return 0
