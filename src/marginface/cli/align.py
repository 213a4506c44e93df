"""``marginface align INPUT --out OUT``: 5-point alignment of a folder, or of a pair set to .bin."""

from __future__ import annotations

import argparse

from marginface.cli.options import check_outputs, non_negative_int, positive_int
from marginface.data.align import TEMPLATES
from marginface.data.align_batch import align_folder, align_pairs_to_bin
from marginface.data.loading import load_pairs
from marginface.detect.aligned import align_folder_detected

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "align",
        help="align faces to the ArcFace 112x112 or SphereFace 112x96 template from landmarks",
        description="INPUT an image folder -> OUT folder (same relative paths); or, when OUT ends "
        "with .bin, INPUT a pair set (lfw:DIR or a pairs list) -> insightface .bin. Images "
        "without landmarks are centre-cropped and counted.",
    )
    parser.add_argument("input", help="image folder, or lfw:DIR / pairs list when OUT is a .bin")
    parser.add_argument("--out", required=True, help="output folder or X.bin")
    parser.add_argument(
        "--landmarks", default=None, help="landmarks file: 'relative/path x1 y1 ... x5 y5' per line"
    )
    parser.add_argument("--template", choices=sorted(TEMPLATES), default="arcface_112x112")
    parser.add_argument(
        "--format", choices=["JPEG", "PNG"], default="JPEG", help="image format of an output folder"
    )
    parser.add_argument("--quality", type=positive_int, default=95, help="JPEG quality")
    parser.add_argument("--detect", action="store_true",
                        help="detect the face (MTCNN) instead of reading landmarks; "
                        "--landmarks is then ignored (folder output only)")
    parser.add_argument("--face", choices=["central", "largest"], default="central",
                        help="with --detect: which face of an image with several")
    parser.add_argument("--workers", type=non_negative_int, default=2)
    parser.add_argument("--skip-bad-images", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    check_outputs((args.out, "--out", "file" if args.out.lower().endswith(".bin") else "dir"))
    common = dict(
        template=args.template,
        quality=args.quality,
        num_workers=args.workers,
        progress=not args.no_progress,
        skip_bad_images=args.skip_bad_images,
    )
    if args.detect:
        if args.out.lower().endswith(".bin"):
            raise ValueError("align --detect writes a folder; give --out a folder, not a .bin")
        detected = align_folder_detected(
            args.input, args.out, policy=args.face, image_format=args.format, **common)
        print("\n".join([f"{detected.summary()} -> {args.out}", *detected.details()]))
        return 0
    if args.out.lower().endswith(".bin"):
        pairs = load_pairs(
            args.input, landmarks_file=args.landmarks, skip_bad_images=args.skip_bad_images
        )
        report = align_pairs_to_bin(pairs, args.out, **common)
    else:
        report = align_folder(
            args.input, args.out, landmarks_file=args.landmarks, image_format=args.format, **common
        )
    print(report.summary())
    for name in report.center_crop_images[:20]:
        print(f"  centre crop (no landmarks): {name}")
    for name in report.landmarks_ignored[:20]:
        print(f"  landmarks ignored (already an aligned crop): {name}")
    for name, error in report.failed.items():
        print(f"  skipped {name}: {error}")
    return 0
