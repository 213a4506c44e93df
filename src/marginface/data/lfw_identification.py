"""The LFW 1:N identification protocol (marginface's; LFW has no official 1:N protocol).

From LFW's ``images/<name>/<name>_NNNN.jpg``:
- gallery: the first image (by file name) of every person with at least 2 images;
- mated probes: those people's other images;
- non-mated probes: the images of the people with exactly one image.
On all of LFW: 1,680 gallery identities, 7,484 mated and 4,069 non-mated probes.
Images are aligned from ``lfw_landmark.txt`` where it lists them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from marginface.data.imagefolder import list_images
from marginface.data.lfw import read_landmarks
from marginface.data.pairs import ImageItem

__all__ = ["IdentificationSet", "lfw_identification_set"]


@dataclass
class IdentificationSet:
    """Gallery images (one per identity) and probes, each with an identity label; non-mated
    probes carry labels that are not in ``gallery_labels``."""

    name: str
    gallery: list[ImageItem]
    gallery_labels: list[str]
    probes: list[ImageItem]
    probe_labels: list[str]

    @property
    def mated(self) -> int:
        enrolled = set(self.gallery_labels)
        return sum(label in enrolled for label in self.probe_labels)


def lfw_identification_set(
    root: str | Path, *, initials: Sequence[str] | None = None
) -> IdentificationSet:
    """The protocol above on LFW at ``root``; ``initials`` keeps only the people whose names
    start with one of them (a deterministic subset for quick runs)."""
    root = Path(root)
    images_dir = root / "images"
    if not images_dir.is_dir():
        raise FileNotFoundError(f"LFW folder {root} has no images/ sub-folder")
    marks_file = root / "lfw_landmark.txt"
    marks = read_landmarks(marks_file) if marks_file.is_file() else {}
    gallery, gallery_labels, probes, probe_labels = [], [], [], []
    people = sorted(p for p in images_dir.iterdir() if p.is_dir())
    if initials is not None:
        people = [p for p in people if p.name.startswith(tuple(initials))]
    for person in people:
        images = [
            ImageItem(p, str(p), marks.get(p.relative_to(images_dir).as_posix()))
            for p in list_images(person)
        ]
        if len(images) >= 2:
            gallery.append(images[0])
            gallery_labels.append(person.name)
            images = images[1:]
        probes += images
        probe_labels += [person.name] * len(images)
    if not gallery:
        raise ValueError(f"LFW at {root}: no person with 2 or more images (initials {initials})")
    subset = "" if initials is None else f" (initials {''.join(initials)})"
    return IdentificationSet(f"lfw:{root}{subset}", gallery, gallery_labels, probes, probe_labels)
