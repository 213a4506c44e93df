"""Enrolment: one folder per identity -> a :class:`Gallery`, through the one embedding path.

``mode="mean"``: the identity's template is the mean of its L2-normalised embeddings, normalised
again (cosine search); ``mode="all"``: every image's normalised embedding is kept and an identity
scores its best row. An empty identity folder, or one whose images all fail to decode, enrols
nothing and is reported; an unreadable image is skipped and reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from marginface.data.imagefolder import list_images
from marginface.data.lfw import read_landmarks
from marginface.data.pairs import ImageItem
from marginface.eval.embed import check_finite_embeddings, compute_embeddings
from marginface.identify.detected import detected_items
from marginface.identify.gallery import TEMPLATE_MODES, Gallery, model_record
from marginface.identify.search import normalize_rows
from marginface.inputs import require_dir
from marginface.models.io import model_fingerprint

__all__ = ["EnrollResult", "templates_from_embeddings", "enroll_folder"]


@dataclass
class EnrollResult:
    """The gallery, plus what was not enrolled: ``empty`` identity folders and ``failed``
    images (path -> error)."""

    gallery: Gallery
    empty: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    images: int = 0


def templates_from_embeddings(
    embeddings: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray, mode: str = "mean"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows, row_labels)``: per-image normalised rows (``"all"``) or one normalised mean of
    normalised rows per label 0..L-1 (``"mean"``, labels sorted)."""
    if mode not in TEMPLATE_MODES:
        raise ValueError(f"mode must be one of {TEMPLATE_MODES}, got {mode!r}")
    unit = normalize_rows(embeddings)
    labels = torch.as_tensor(labels, dtype=torch.int64)
    if mode == "all":
        return unit, labels
    count = int(labels.max()) + 1 if labels.numel() else 0
    sums = torch.zeros(count, unit.shape[1]).index_add_(0, labels, unit)
    return normalize_rows(sums), torch.arange(count)


def enroll_folder(
    model: torch.nn.Module,
    folder: str | Path,
    *,
    mode: str = "mean",
    flip: str | None = "concat",
    landmarks_file: str | Path | None = None,
    batch_size: int = 64,
    num_workers: int = 2,
    progress: bool = True,
    engine: str = "torch",
    detect: bool = False,
    face: str = "central",
    center_crop: bool = False,
    skip_bad_images: bool = True,
) -> EnrollResult:
    """Embed ``folder/<identity>/<image>`` and build the identities' templates.

    ``landmarks_file`` (lfw_landmark layout, paths relative to ``folder``) aligns the images
    that have an entry; the others must be aligned crops (see ``marginface embed``).
    ``detect``: raw photos; each image's ``face`` is detected (MTCNN) and aligned instead, and
    images with no face are reported in ``failed``. An image that is not an aligned crop (and
    has no landmarks) is a :class:`~marginface.data.align.NotAlignedError` unless
    ``center_crop``. Unreadable or too small images are named in ``failed``, or an error without
    ``skip_bad_images``.
    """
    if mode not in TEMPLATE_MODES:
        raise ValueError(f"mode must be one of {TEMPLATE_MODES}, got {mode!r}")
    folder = require_dir(folder, "gallery folder")
    table = read_landmarks(landmarks_file) if landmarks_file and not detect else {}
    people = sorted(p for p in folder.iterdir() if p.is_dir())
    if not people:
        raise ValueError(f"gallery folder {folder} has no identity sub-folders")
    items, owners, empty = [], [], []
    for index, person in enumerate(people):
        images = list_images(person)
        if not images:
            empty.append(person.name)
        for path in images:
            items.append(ImageItem(path, str(path), table.get(path.relative_to(folder).as_posix())))
            owners.append(index)
    failed: dict[str, str] = {}
    if detect:
        items, kept, failed = detected_items(model, items, face=face, num_workers=num_workers,
                                             progress=progress, skip_bad_images=skip_bad_images)
        owners = [owners[i] for i in kept]
    result = compute_embeddings(
        model, items, flip=flip, batch_size=batch_size,
        num_workers=0 if detect else num_workers,
        progress=progress, skip_bad_images=skip_bad_images, desc="enroll", engine=engine,
        center_crop=center_crop,
    )
    check_finite_embeddings(result.embeddings, [item.name for item in items], result.failed)
    good = [i for i in range(len(items)) if i not in result.failed]
    failed.update({items[i].name: error for i, error in result.failed.items()})
    enrolled = sorted({owners[i] for i in good})
    empty += [p.name for i, p in enumerate(people) if i not in enrolled and p.name not in empty]
    remap = {old: new for new, old in enumerate(enrolled)}
    labels = torch.tensor([remap[owners[i]] for i in good], dtype=torch.int64)
    dim = result.embeddings.shape[1] if result.embeddings.ndim == 2 else 0
    rows, row_labels = templates_from_embeddings(
        result.embeddings[good].reshape(len(good), dim), labels, mode
    )
    counts = torch.bincount(labels, minlength=len(enrolled)).tolist()
    names = [people[i].name for i in enrolled]
    gallery = Gallery(
        names, rows, row_labels, model_fingerprint(model), model_record(model), mode, flip,
        dict(zip(names, counts, strict=True)),
    )
    return EnrollResult(gallery, sorted(empty), failed, len(good))
