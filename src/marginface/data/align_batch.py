"""Batch alignment (``marginface align``): image folder -> aligned folder, pair set -> .bin.

One face at a time is :mod:`marginface.data.align`; this module spreads it over many files.
Formerly ``marginface.data.aligning``.

Every image is aligned from its 5 landmarks when the landmarks file has it; otherwise it falls
back to a centre crop (or is taken as-is when it already has the template's size), and the report
counts each case and lists the fallbacks. Work is spread over DataLoader worker processes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from marginface.atomic import atomic_write_bytes
from marginface.data.align import load_aligned, template_size
from marginface.data.binset import write_bin
from marginface.data.decoding import BadImageError
from marginface.data.imagefolder import list_image_tree
from marginface.data.lfw import read_landmarks
from marginface.data.pairs import ImageItem, PairSet
from marginface.data.transforms import DECODE_ERRORS

__all__ = ["AlignReport", "align_folder", "align_pairs_to_bin"]


@dataclass
class AlignReport:
    """Counts by method (landmarks / template / center), fallbacks and failures by name;
    ``landmarks_ignored``: images already of a template's size whose landmarks were not used."""

    total: int = 0
    landmarks: int = 0
    template: int = 0
    center: int = 0
    center_crop_images: list[str] = field(default_factory=list)
    landmarks_ignored: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    output: str = ""

    def summary(self) -> str:
        return (
            f"{self.total} images -> {self.output}: {self.landmarks} aligned from landmarks, "
            f"{self.template} already aligned, {self.center} centre-cropped (no landmarks), "
            f"{len(self.failed)} unreadable or too small"
            + (f", {len(self.landmarks_ignored)} with landmarks ignored (already aligned)"
               if self.landmarks_ignored else "")
        )


class _Encoder(Dataset):
    def __init__(self, items: list[ImageItem], template: str, fmt: str, quality: int) -> None:
        self.items, self.template, self.fmt, self.quality = items, template, fmt, quality

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, str, bytes, str]:
        item = self.items[index]
        try:
            image, method = load_aligned(item.source, self.template, item.landmarks,
                                         name=item.name)
        except (*DECODE_ERRORS, FileNotFoundError) as error:
            return index, "", b"", f"{type(error).__name__}: {error}"
        buffer = io.BytesIO()
        options = {"quality": self.quality} if self.fmt == "JPEG" else {}
        image.save(buffer, format=self.fmt, **options)
        return index, method, buffer.getvalue(), ""


def _run(
    items: list[ImageItem],
    template: str,
    *,
    fmt: str,
    quality: int,
    num_workers: int,
    progress: bool,
    skip_bad_images: bool,
):
    template_size(template)  # validates the name
    loader = DataLoader(
        _Encoder(items, template, fmt, quality),
        batch_size=16,
        num_workers=num_workers,
        collate_fn=lambda batch: batch,
    )
    report = AlignReport(total=len(items))
    for batch in tqdm(loader, desc="align", unit="batch", disable=not progress, leave=False):
        for index, method, data, error in batch:
            name = items[index].name
            if error:
                if not skip_bad_images:
                    raise BadImageError(f"cannot read image {name}: {error}; pass "
                                        "--skip-bad-images / skip_bad_images to skip and "
                                        "count such images")
                report.failed[name] = error
                continue
            setattr(report, method, getattr(report, method) + 1)
            if method == "center":
                report.center_crop_images.append(name)
            elif method == "template" and items[index].landmarks is not None:
                report.landmarks_ignored.append(name)
            yield index, data, report
    yield -1, b"", report


def align_folder(
    source: str | Path,
    destination: str | Path,
    *,
    landmarks_file: str | Path | None = None,
    template: str = "arcface_112x112",
    image_format: str = "JPEG",
    quality: int = 95,
    num_workers: int = 2,
    progress: bool = True,
    skip_bad_images: bool = False,
) -> AlignReport:
    """Align every image under ``source`` (recursively) into ``destination``, same relative paths.

    Landmarks are looked up by the path relative to ``source`` (posix form), as in
    lfw_landmark.txt. ``image_format`` "JPEG" (``quality``) or "PNG" (lossless; suffix .png).
    """
    source, destination = Path(source), Path(destination)
    if image_format not in ("JPEG", "PNG"):
        raise ValueError(f"image_format must be 'JPEG' or 'PNG', got {image_format!r}")
    paths = list_image_tree(source)
    table = read_landmarks(landmarks_file) if landmarks_file else {}
    relative = [p.relative_to(source).as_posix() for p in paths]
    items = [ImageItem(p, r, table.get(r)) for p, r in zip(paths, relative, strict=True)]
    suffix = ".jpg" if image_format == "JPEG" else ".png"
    report = AlignReport()
    for index, data, report in _run(  # noqa: B007 (the last item carries the report)
        items,
        template,
        fmt=image_format,
        quality=quality,
        num_workers=num_workers,
        progress=progress,
        skip_bad_images=skip_bad_images,
    ):
        if index < 0:
            break
        target = (destination / relative[index]).with_suffix(suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, data)  # never half an image under its final name
    report.output = str(destination)
    return report


def align_pairs_to_bin(
    pairs: PairSet,
    destination: str | Path,
    *,
    template: str = "arcface_112x112",
    quality: int = 95,
    num_workers: int = 2,
    progress: bool = True,
    skip_bad_images: bool = False,
) -> AlignReport:
    """Align the images of a pair set and write it as an insightface .bin (JPEG, pair order).

    Pairs whose images cannot be read are an error, or with ``skip_bad_images`` left out and
    listed in the report's ``failed``.
    """
    used = np.unique(pairs.pairs.ravel())
    items = [pairs.images[i] for i in used]
    encoded: dict[int, bytes] = {}
    report = AlignReport()
    for index, data, report in _run(  # noqa: B007 (the last item carries the report)
        items,
        template,
        fmt="JPEG",
        quality=quality,
        num_workers=num_workers,
        progress=progress,
        skip_bad_images=skip_bad_images,
    ):
        if index >= 0:
            encoded[int(used[index])] = data
    images, flags = [], []
    for (a, b), same in zip(pairs.pairs.tolist(), pairs.issame.tolist(), strict=True):
        if a in encoded and b in encoded:
            images += [encoded[a], encoded[b]]
            flags.append(same)
    write_bin(destination, images, flags)
    report.output = str(destination)
    return report
