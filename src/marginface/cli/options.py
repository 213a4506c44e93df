"""Command-line options shared by the commands that embed image files (embed, enroll,
identify; verify and evaluate take ``--center-crop`` too): flip mode, batch size, decode workers,
progress bar; face detection for raw photos; centre crops of unaligned images."""

from __future__ import annotations

import argparse
import math

from marginface.outputs import check_output_dir, check_output_file

__all__ = ["add_center_crop_option", "add_detect_options", "add_embedding_options",
           "check_outputs", "embedding_kwargs", "finite_float", "flip_of", "non_negative_int",
           "positive_int", "probability"]


def check_outputs(*targets: tuple[object, str, str]) -> None:
    """Before any work: each ``(path, flag, "file" | "dir")`` can be written (None: skipped).

    A one-line :class:`marginface.errors.OutputPathError` names the flag and the path.
    """
    for path, flag, kind in targets:
        if path is None:
            continue
        (check_output_dir if kind == "dir" else check_output_file)(str(path), flag)


# argparse types: argparse prefixes the message with the flag ("argument --threshold: ...")
def finite_float(text: str) -> float:
    """A finite real number (``nan``, ``inf`` refused): thresholds, means."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def probability(text: str) -> float:
    """A rate in (0, 1] (``--fpir``)."""
    value = finite_float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text!r}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def positive_int(text: str) -> int:
    """A whole number >= 1 (batch sizes, top-k)."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """A whole number >= 0 (worker processes: 0 decodes in the main process)."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


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
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--workers", type=non_negative_int, default=2,
                        help="DataLoader decode/align workers")
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
