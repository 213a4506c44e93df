"""``marginface detect IMAGES -o faces.jsonl [--draw DIR]``: every face of every image."""

from __future__ import annotations

import argparse

from marginface.cli.options import check_outputs, non_negative_int
from marginface.detect.outputs import detect_images

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "detect",
        help="detect faces (box, score, 5 landmarks) with MTCNN; one JSON line per image",
        description="IMAGES are files or folders (searched recursively). Images with no face get "
        "a 'no face' line and are counted. Weights come from the installed mtcnn package.",
    )
    parser.add_argument("images", nargs="+", help="image files or folders")
    parser.add_argument("-o", "--out", required=True, help="faces.jsonl")
    parser.add_argument("--draw", default=None, metavar="DIR",
                        help="write copies with boxes and landmarks drawn into DIR")
    parser.add_argument("--face", choices=["all", "central", "largest"], default="all",
                        help="faces listed per image (default: all)")
    parser.add_argument("--workers", type=non_negative_int, default=2,
                        help="image decoding processes")
    parser.add_argument("--skip-bad-images", action="store_true",
                        help="skip and count unreadable or too-small images instead of failing")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    check_outputs((args.out, "--out", "file"), (args.draw, "--draw", "dir"))
    report = detect_images(args.images, args.out, draw_dir=args.draw, policy=args.face,
                           num_workers=args.workers, progress=not args.no_progress,
                           skip_bad_images=args.skip_bad_images)
    print("\n".join([f"{report.summary()} -> {args.out}", *report.details()]))
    return 0
