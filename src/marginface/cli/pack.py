"""``marginface pack FOLDER OUT.rec``: an image folder as insightface .rec/.idx/property."""

from __future__ import annotations

import argparse

from marginface.data.recfile import pack_folder

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
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    report = pack_folder(args.folder, args.out, skip_undecodable=args.skip_bad_images)
    print(
        f"packed {report['images']} images of {report['classes']} identities "
        f"({report['size_hw'][0]}x{report['size_hw'][1]}) into {report['rec']}, {report['idx']}, "
        f"{report['property']}; skipped {len(report['skipped'])}"
    )
    for path, reason in report["skipped"]:
        print(f"  skipped {path}: {reason}")
    return 0
