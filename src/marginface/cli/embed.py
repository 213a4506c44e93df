"""``marginface embed FOLDER -o emb.npy --model MODEL_FILE``: embeddings of every image."""

from __future__ import annotations

import argparse

from marginface.cli.options import add_embedding_options, check_outputs, flip_of
from marginface.eval.images import embed_folder, embed_folder_detected
from marginface.eval.model_report import load_model_file

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "embed", help="L2-normalised embeddings of the images of a folder (.npy + file list)"
    )
    parser.add_argument("folder", help="folder of images (searched recursively)")
    parser.add_argument("-o", "--out", required=True,
                        help="emb.npy (emb.json lists the files, a JSON array in row order; "
                        "emb.txt, one per line, is deprecated)")
    parser.add_argument("--model", required=True, help="marginface model file")
    parser.add_argument("--landmarks", default=None, help="landmarks file (relative paths)")
    parser.add_argument("--detect", action="store_true",
                        help="raw photos: detect (MTCNN) and align each image's face; "
                        "--landmarks is ignored; images with no face get no row and are counted")
    parser.add_argument("--face", choices=["central", "largest"], default="central",
                        help="with --detect: which face of an image with several")
    parser.add_argument("--skip-bad-images", action="store_true",
                        help="skip and count unreadable or too small images (no row for them)")
    add_embedding_options(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    check_outputs((args.out, "--out", "file"))
    if args.detect:
        npy, listing, report = embed_folder_detected(
            load_model_file(args.model), args.folder, args.out, face=args.face,
            flip=flip_of(args), batch_size=args.batch_size,
            num_workers=args.workers, progress=not args.no_progress,
            skip_bad_images=args.skip_bad_images)
        print("\n".join([report.summary(), *report.details()]))
        print(f"wrote {npy} and {listing}")
        return 0
    npy, listing = embed_folder(
        load_model_file(args.model),
        args.folder,
        args.out,
        landmarks_file=args.landmarks,
        flip=flip_of(args),
        batch_size=args.batch_size,
        num_workers=args.workers,
        progress=not args.no_progress,
        center_crop=args.center_crop,
        skip_bad_images=args.skip_bad_images,
    )
    print(f"wrote {npy} and {listing}")
    return 0
