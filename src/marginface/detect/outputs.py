"""``marginface detect``: faces of many images to a JSON-lines file, optionally drawn on copies.

One line per input image, in input order: ``{"image": name, "width": W, "height": H, "faces":
[{"box": [x1, y1, x2, y2], "score": s, "landmarks": [[x, y] x 5]}, ...]}``, with ``"status":
"no face"`` and an empty list when none is found, or ``"status": "unreadable"`` and the error for
an image skipped by ``skip_bad_images``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from marginface.atomic import atomic_write, atomic_write_bytes
from marginface.data.imagefolder import IMAGE_EXTENSIONS, list_image_tree
from marginface.detect.batch import DetectionReport, detect_items, relative_items
from marginface.detect.detector import FaceDetector
from marginface.detect.faces import Face

__all__ = ["collect_images", "draw_faces", "detect_images"]


def collect_images(inputs: Sequence[str | Path]) -> list[tuple[Path, str]]:
    """Image files and folders (searched recursively) -> ``(path, name)``; a folder's images are
    named relative to it, a file by its path as given."""
    items: list[tuple[Path, str]] = []
    for entry in map(Path, inputs):
        if entry.is_dir():
            items += relative_items(list_image_tree(entry), entry)
        elif entry.is_file():
            items.append((entry, entry.as_posix()))
        else:
            raise FileNotFoundError(f"image or folder {entry} does not exist")
    if not items:
        raise ValueError("no images given")
    return items


def draw_faces(image: Image.Image, faces: Sequence[Face]) -> Image.Image:
    """A copy of ``image`` with each box (green) and its 5 landmarks (red dots) drawn."""
    copy = image.copy()
    pen = ImageDraw.Draw(copy)
    width = max(1, round(min(image.size) / 200))
    for face in faces:
        pen.rectangle(face.box, outline=(0, 255, 0), width=width)
        for x, y in face.landmarks:
            r = 2 * width
            pen.ellipse((x - r, y - r, x + r, y + r), fill=(255, 0, 0))
    return copy


def detect_images(
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    draw_dir: str | Path | None = None,
    policy: str = "all",
    detector: FaceDetector | None = None,
    num_workers: int = 2,
    progress: bool = True,
    skip_bad_images: bool = False,
) -> DetectionReport:
    """Detect the faces of ``inputs`` (files or folders) into ``out`` (JSON lines)."""
    items = collect_images(inputs)
    lines: dict[str, str] = {}

    def record(name: str, image: Image.Image, faces: list[Face]) -> None:
        entry = {"image": name, "width": image.width, "height": image.height,
                 "faces": [face.to_dict() for face in faces]}
        if not faces:
            entry["status"] = "no face"
        lines[name] = json.dumps(entry)
        if draw_dir is not None:
            target = Path(draw_dir) / name.lstrip("/")
            if target.suffix.lower() not in IMAGE_EXTENSIONS:
                target = target.with_suffix(".png")
            target.parent.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()
            fmt = Image.registered_extensions().get(target.suffix.lower(), "PNG")
            draw_faces(image, faces).save(buffer, format=fmt)
            atomic_write_bytes(target, buffer.getvalue())

    report = detect_items(items, record, policy=policy, detector=detector,
                          num_workers=num_workers, progress=progress,
                          skip_bad_images=skip_bad_images)
    with atomic_write(out, "w") as handle:
        for _, name in items:
            if name in lines:
                handle.write(lines[name] + "\n")
            else:
                handle.write(json.dumps({"image": name, "status": "unreadable", "faces": [],
                                         "error": report.bad.get(name, "")}) + "\n")
    return report
