"""Detection over many image files: decoding in worker processes, batched detection, counting.

Every image ends in exactly one of three lists of the :class:`DetectionReport`: faces found, no
face, or unreadable/too small (an error unless ``skip_bad_images``). Nothing is dropped silently.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from marginface.detect.detector import FaceDetector
from marginface.detect.faces import Face
from marginface.detect.images import BadImageError, ImageSource, load_photo
from marginface.detect.policies import select_faces

__all__ = ["DetectionReport", "detect_items", "relative_items"]


@dataclass
class DetectionReport:
    """Per image: how many faces were found; which had none; which could not be read."""

    total: int = 0
    faces_per_image: dict[str, int] = field(default_factory=dict)
    no_face: list[str] = field(default_factory=list)
    bad: dict[str, str] = field(default_factory=dict)

    @property
    def with_face(self) -> int:
        return sum(1 for n in self.faces_per_image.values() if n > 0)

    def summary(self) -> str:
        histogram = Counter(self.faces_per_image.values())
        counts = ", ".join(f"{k} face{'s' if k != 1 else ''}: {v}"
                           for k, v in sorted(histogram.items()) if k > 0)
        return (f"{self.total} images: {self.with_face} with a face ({counts or 'none'}), "
                f"{len(self.no_face)} with no face, {len(self.bad)} unreadable or too small")

    def details(self, limit: int = 20) -> list[str]:
        """Lines naming the images with no face (first ``limit``) and every skipped image."""
        lines = [f"  no face: {name}" for name in self.no_face[:limit]]
        if len(self.no_face) > limit:
            lines.append(f"  ... and {len(self.no_face) - limit} more with no face")
        return lines + [f"  skipped {name}: {error}" for name, error in self.bad.items()]

    def to_dict(self) -> dict:
        return {"images": self.total, "with_face": self.with_face,
                "no_face": len(self.no_face), "bad_images": len(self.bad),
                "faces_per_image": dict(sorted(Counter(self.faces_per_image.values()).items())),
                "no_face_images": self.no_face, "bad_image_errors": self.bad}


class _Decoder(Dataset):
    def __init__(self, items: Sequence[tuple[ImageSource, str]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray | None, str]:
        source, name = self.items[index]
        try:
            return index, np.asarray(load_photo(source, name)), ""
        except BadImageError as error:
            return index, None, str(error)


def detect_items(
    items: Sequence[tuple[ImageSource, str]],
    on_image: Callable[[str, Image.Image, list[Face]], None],
    *,
    policy: str = "all",
    detector: FaceDetector | None = None,
    num_workers: int = 2,
    batch_size: int = 16,
    progress: bool = True,
    skip_bad_images: bool = False,
) -> DetectionReport:
    """Detect faces in ``items`` (source, name); ``on_image(name, rgb_image, faces)`` gets every
    readable image with the faces ``policy`` keeps (possibly none), in input order."""
    detector = detector or FaceDetector()
    select_faces([], policy, (1, 1))  # validates the policy before any work
    loader = DataLoader(_Decoder(items), batch_size=batch_size, num_workers=num_workers,
                        collate_fn=lambda batch: batch)
    report = DetectionReport(total=len(items))
    bar = tqdm(total=len(items), desc="detect", unit="img", disable=not progress, leave=False)
    for batch in loader:
        good = []
        for index, array, error in batch:
            name = items[index][1]
            if error:
                if not skip_bad_images:
                    raise BadImageError(error)
                report.bad[name] = error
            else:
                good.append((name, array))
        found = detector.detect([array for _, array in good]) if good else []
        for (name, array), faces in zip(good, found, strict=True):
            image = Image.fromarray(array)
            kept = select_faces(faces, policy, image.size)
            report.faces_per_image[name] = len(faces)
            if not kept:
                report.no_face.append(name)
            on_image(name, image, kept)
        bar.update(len(batch))
    bar.close()
    return report


def relative_items(paths: Sequence[Path], root: Path) -> list[tuple[Path, str]]:
    """``(path, path relative to root in posix form)``: the names landmark files use."""
    return [(p, p.relative_to(root).as_posix()) for p in paths]
