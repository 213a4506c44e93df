"""``marginface pack FOLDER OUT.rec``: an image folder as insightface .rec/.idx/property."""

from __future__ import annotations

import argparse
from pathlib import Path

from marginface.cli.options import check_outputs, non_negative_int
from marginface.data.recfile import pack_folder
from marginface.detect.pack import pack_folder_detected
from marginface.templates import TEMPLATES

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pack",
        help="write an identity-per-folder image set as insightface .rec + .idx + property",
    )
    parser.add_argument("folder", help="ROOT/<identity>/<image> (aligned images of one size)")
    parser.add_argument("out", help="OUT.rec (OUT.idx and 'property' are written beside it)")
    parser.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="leave out undecodable images (listed) instead of failing",
    )
    parser.add_argument("--detect", action="store_true",
                        help="raw photos: detect (MTCNN) and align each photo's face first")
    parser.add_argument("--template", choices=sorted(TEMPLATES), default=None,
                        help="with --detect: the alignment template (required)")
    parser.add_argument("--face", choices=["central", "largest"], default="central",
                        help="with --detect: which face of a photo with several")
    parser.add_argument("--workers", type=non_negative_int, default=2,
                        help="with --detect: decode processes")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    rec = Path(args.out)
    check_outputs((rec, "OUT", "file"), (rec.with_suffix(".idx"), "OUT (.idx)", "file"),
                  (rec.parent / "property", "OUT (property)", "file"))
    if args.detect:
        if args.template is None:
            raise ValueError("pack --detect needs --template (e.g. arcface_112x112)")
        report, found = pack_folder_detected(
            args.folder, args.out, template=args.template, policy=args.face,
            num_workers=args.workers, progress=not args.no_progress,
            skip_bad_images=args.skip_bad_images)
        print("\n".join([found.summary(), *found.details()]))
    else:
        report = pack_folder(args.folder, args.out, skip_undecodable=args.skip_bad_images)
    print(
        f"packed {report['images']} images of {report['classes']} identities "
        f"({report['size_hw'][0]}x{report['size_hw'][1]}) into {report['rec']}, {report['idx']}, "
        f"{report['property']}; skipped {len(report['skipped'])}"
    )
    for path, reason in report["skipped"]:
        print(f"  skipped {path}: {reason}")
    return 0
