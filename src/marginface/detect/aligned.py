"""Detect -> align: one face per image (``central`` or ``largest``) warped onto a template.

The landmarks come from the detector and are applied to the same decoded, EXIF-rotated image
(never to the raw file), so a rotated photo aligns correctly. Any landmarks file is ignored.
Images with no face are counted in the report and produce no crop.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from marginface.atomic import atomic_write_bytes
from marginface.data.align import align_face
from marginface.data.imagefolder import list_image_tree
from marginface.data.pairs import ImageItem, PairSet
from marginface.detect.batch import DetectionReport, detect_items, relative_items
from marginface.detect.detector import FaceDetector
from marginface.detect.faces import Face
from marginface.detect.images import ImageSource
from marginface.templates import template_size

__all__ = ["ONE_FACE_POLICIES", "detect_and_align", "align_folder_detected", "detect_pairset"]

ONE_FACE_POLICIES = ("central", "largest")


def detect_and_align(
    items: Sequence[tuple[ImageSource, str]],
    template: str,
    *,
    policy: str = "central",
    detector: FaceDetector | None = None,
    image_format: str = "PNG",
    quality: int = 95,
    num_workers: int = 2,
    progress: bool = True,
    skip_bad_images: bool = False,
) -> tuple[list[ImageItem], DetectionReport]:
    """Aligned crops (encoded ``image_format`` bytes, as :class:`ImageItem`) of the one face
    ``policy`` picks in each image that has one, in input order, and the detection report."""
    if policy not in ONE_FACE_POLICIES:
        raise ValueError(f"face policy must be one of {ONE_FACE_POLICIES}, got {policy!r}")
    template_size(template)  # validates the template name before any work
    crops: dict[str, bytes] = {}

    def keep(name: str, image: Image.Image, faces: list[Face]) -> None:
        if faces:
            buffer = io.BytesIO()
            options = {"quality": quality} if image_format == "JPEG" else {}
            align_face(image, faces[0].landmarks, template).save(buffer, image_format, **options)
            crops[name] = buffer.getvalue()

    report = detect_items(items, keep, policy=policy, detector=detector,
                          num_workers=num_workers, progress=progress,
                          skip_bad_images=skip_bad_images)
    aligned = [ImageItem(crops[name], name) for _, name in items if name in crops]
    return aligned, report


def align_folder_detected(
    source: str | Path,
    destination: str | Path,
    *,
    template: str = "arcface_112x112",
    policy: str = "central",
    image_format: str = "JPEG",
    quality: int = 95,
    detector: FaceDetector | None = None,
    num_workers: int = 2,
    progress: bool = True,
    skip_bad_images: bool = False,
) -> DetectionReport:
    """``marginface align --detect``: every image under ``source`` -> ``destination`` (same
    relative paths), aligned from detected landmarks."""
    if image_format not in ("JPEG", "PNG"):
        raise ValueError(f"image_format must be 'JPEG' or 'PNG', got {image_format!r}")
    source, destination = Path(source), Path(destination)
    items = relative_items(list_image_tree(source), source)
    aligned, report = detect_and_align(
        items, template, policy=policy, detector=detector, image_format=image_format,
        quality=quality, num_workers=num_workers, progress=progress,
        skip_bad_images=skip_bad_images)
    suffix = ".jpg" if image_format == "JPEG" else ".png"
    for item in aligned:
        target = (destination / item.name).with_suffix(suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, item.source)
    return report


def detect_pairset(
    pairs: PairSet,
    template: str,
    *,
    policy: str = "central",
    num_workers: int = 2,
    progress: bool = True,
    skip_bad_images: bool = False,
) -> tuple[PairSet, DetectionReport, int]:
    """The pair set with every image replaced by its detected, aligned face (landmarks of the set
    ignored). Pairs with an image that has no face (or, with ``skip_bad_images``, cannot be read)
    are left out and added to ``skipped``; returns ``(pairs, report, no_face_pairs)``."""
    if pairs.aligned:
        raise ValueError(f"{pairs.name} holds aligned crops (a .bin): --detect needs raw photos")
    names = [item.name for item in pairs.images]
    if len(set(names)) != len(names):
        raise ValueError(f"{pairs.name}: image names are not unique")
    used = np.unique(pairs.pairs.ravel())  # only images some pair refers to
    aligned, report = detect_and_align(
        [(pairs.images[i].source, names[i]) for i in used], template, policy=policy,
        num_workers=num_workers, progress=progress, skip_bad_images=skip_bad_images)
    by_name = {item.name: item for item in aligned}
    has_face = np.array([name in by_name for name in names], dtype=bool)
    keep = has_face[pairs.pairs].all(axis=1)
    images = [by_name.get(name, ImageItem(b"", name)) for name in names]
    detected = PairSet(images=images, pairs=pairs.pairs, issame=pairs.issame, folds=pairs.folds,
                       name=pairs.name, aligned=False, skipped=pairs.skipped,
                       skipped_images=list(pairs.skipped_images))
    no_face = set(report.no_face)
    no_face_pairs = int(np.isin(pairs.pairs, [i for i, n in enumerate(names) if n in no_face])
                        .any(axis=1).sum())
    return detected.subset(keep), report, no_face_pairs
