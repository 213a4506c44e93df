"""Command-line options shared by the commands that embed image files (embed, enroll,
identify; verify and evaluate take ``--center-crop`` too): flip mode, batch size, decode workers,
progress bar; face detection for raw photos; centre crops of unaligned images."""

from __future__ import annotations

import argparse

__all__ = ["add_center_crop_option", "add_detect_options", "add_embedding_options",
           "embedding_kwargs", "flip_of"]


def add_center_crop_option(parser: argparse.ArgumentParser) -> None:
    """``--center-crop``: take the centre crop of images that are not aligned crops (without it
    they are an error naming --detect, --landmarks and --center-crop)."""
    parser.add_argument("--center-crop", action="store_true",
                        help="images that are neither aligned crops of the model's input size "
                        "nor in --landmarks: take their centre crop, unaligned (without it they "
                        "are an error)")


def add_embedding_options(parser: argparse.ArgumentParser, *, flip: bool = True) -> None:
    """``--flip`` (unless ``flip`` is False), ``--batch-size``, ``--workers``, ``--no-progress``,
    ``--center-crop``."""
    add_center_crop_option(parser)
    if flip:
        parser.add_argument("--flip", choices=["concat", "sum", "none"], default="concat")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader decode/align workers")
    parser.add_argument("--no-progress", action="store_true")


def flip_of(args: argparse.Namespace) -> str | None:
    """The flip mode of :func:`marginface.eval.embedder.embed_batch` (None for "none")."""
    return None if args.flip == "none" else args.flip


def add_detect_options(parser: argparse.ArgumentParser) -> None:
    """``--detect`` (raw photos: MTCNN, then alignment to the model's template) and ``--face``."""
    parser.add_argument("--detect", action="store_true",
                        help="raw photos: detect (MTCNN) and align each image's face; "
                        "--landmarks is ignored; images with no face are reported and counted")
    parser.add_argument("--face", choices=["central", "largest"], default="central",
                        help="with --detect: which face of an image with several")


def embedding_kwargs(args: argparse.Namespace) -> dict:
    """The image-embedding keywords of enrol and identify: landmarks, detection, centre crops,
    batching."""
    return {"landmarks_file": args.landmarks, "detect": args.detect, "face": args.face,
            "center_crop": args.center_crop, "batch_size": args.batch_size,
            "num_workers": args.workers, "progress": not args.no_progress}
