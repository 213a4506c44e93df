"""``marginface enroll DIR --model MODEL -o people.gallery``: enrol one folder per identity;
``--gallery G --add`` adds identities in place, ``--remove NAME`` removes one."""

from __future__ import annotations

import argparse

from marginface.cli.options import (
    add_detect_options,
    add_embedding_options,
    check_outputs,
    embedding_kwargs,
    flip_of,
)
from marginface.identify.manage import update_gallery

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "enroll", help="build or update a 1:N gallery from one image folder per identity"
    )
    parser.add_argument("folder", nargs="?", default=None, help="DIR/<identity>/<image>")
    parser.add_argument("--model", default=None, help="marginface model file")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("-o", "--out", default=None, help="new gallery file (replaced if present)")
    target.add_argument("--gallery", default=None, help="existing gallery file, updated in place")
    parser.add_argument("--add", action="store_true", help="add DIR's identities to --gallery")
    parser.add_argument("--remove", action="append", default=[], metavar="NAME",
                        help="remove identity NAME from --gallery (repeatable)")
    parser.add_argument("--replace", action="store_true",
                        help="with --add: replace identities already enrolled (else an error)")
    parser.add_argument("--template", choices=["mean", "all"], default="mean",
                        help="mean: one normalised mean per identity; all: keep every image")
    parser.add_argument("--landmarks", default=None, help="landmarks file (paths relative to DIR)")
    add_detect_options(parser)
    add_embedding_options(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    check_outputs((args.out, "--out", "file"), (args.gallery, "--gallery", "file"))
    if args.gallery and args.folder and not args.add:
        raise ValueError("to enrol DIR into an existing --gallery, pass --add")
    if args.add and not args.gallery:
        raise ValueError("--add needs --gallery G (use -o for a new gallery)")
    if args.remove and not args.gallery:
        raise ValueError("--remove needs --gallery G")
    done = update_gallery(
        args.out or args.gallery,
        folder=args.folder,
        model_file=args.model,
        create=args.out is not None,
        remove=tuple(args.remove),
        replace=args.replace,
        mode=args.template,
        flip=flip_of(args),
        **embedding_kwargs(args),
    )
    for name in done.removed:
        print(f"removed {name}")
    if done.added:
        print(f"enrolled {len(done.added)} identities")
    for name in done.empty:
        print(f"skipped identity {name}: no usable image")
    for image, error in done.failed.items():
        print(f"skipped image {image}: {error}")
    print(
        f"wrote {done.path}: {done.identities} identities, {done.rows} rows "
        f"({len(done.empty)} empty identities, "
        f"{len(done.failed)} images unreadable or without a face)"
    )
    return 0
