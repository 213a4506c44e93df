"""Raw photos in for enrolment and identification: detect (MTCNN), align, then embed.

Each image's one face (``central`` or ``largest``) is aligned to the model's own template; an image
with no face, or one that cannot be read, gives no row and is named in ``failed`` (never dropped
silently).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from marginface.data.pairs import ImageItem
from marginface.detect.aligned import detect_and_align
from marginface.eval.embed import model_preprocessing

__all__ = ["NO_FACE", "detected_items"]

NO_FACE = "no face found (MTCNN)"


def detected_items(
    model: torch.nn.Module,
    items: Sequence[ImageItem],
    *,
    face: str = "central",
    num_workers: int = 2,
    progress: bool = True,
    skip_bad_images: bool = True,
) -> tuple[list[ImageItem], list[int], dict[str, str]]:
    """``(aligned crops, their indices in items, failed name -> reason)``.

    Landmarks in ``items`` are ignored: detection replaces them. An unreadable or too small
    image is named in ``failed``, or an error naming it without ``skip_bad_images``.
    """
    _, template, _ = model_preprocessing(model)
    names = [item.name for item in items]
    if len(set(names)) != len(names):
        raise ValueError("detected_items needs unique image names")
    aligned, report = detect_and_align(
        [(item.source, item.name) for item in items], template, policy=face,
        num_workers=num_workers, progress=progress, skip_bad_images=skip_bad_images,
    )
    index = {name: i for i, name in enumerate(names)}
    failed = {name: NO_FACE for name in report.no_face}
    failed.update(report.bad)
    return aligned, [index[item.name] for item in aligned], failed
