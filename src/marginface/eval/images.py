"""Image files in, results out: a folder to an embeddings file, two images to a score
(``marginface embed`` / ``verify``). Formerly ``marginface.eval.inference``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from marginface.atomic import atomic_paths, atomic_write_text
from marginface.data.imagefolder import list_image_tree
from marginface.data.lfw import read_landmarks
from marginface.data.pairs import ImageItem
from marginface.detect.aligned import detect_and_align
from marginface.detect.batch import DetectionReport, relative_items
from marginface.eval.embed import compute_embeddings, model_preprocessing

__all__ = ["embed_folder", "embed_folder_detected", "VerifyResult", "verify_images"]


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def embed_folder(
    model: torch.nn.Module,
    folder: str | Path,
    out: str | Path,
    *,
    landmarks_file: str | Path | None = None,
    flip: str | None = "concat",
    batch_size: int = 64,
    num_workers: int = 2,
    progress: bool = True,
) -> tuple[Path, Path]:
    """L2-normalised embeddings of every image under ``folder`` (recursive, sorted) to ``out``.

    Writes ``out`` (.npy, float32 (N, D)) and ``out`` with suffix ``.txt`` beside it: the images'
    paths relative to ``folder``, one per line, in row order. Images are aligned from the
    landmarks file when it has them, else taken as aligned crops / centre-cropped.
    """
    folder, out = Path(folder), Path(out)
    paths = list_image_tree(folder)
    table = read_landmarks(landmarks_file) if landmarks_file else {}
    names = [p.relative_to(folder).as_posix() for p in paths]
    items = [ImageItem(p, str(p), table.get(n)) for p, n in zip(paths, names, strict=True)]
    result = compute_embeddings(
        model,
        items,
        flip=flip,
        batch_size=batch_size,
        num_workers=num_workers,
        progress=progress,
        desc="embed",
    )
    return _write_embeddings(out, result.embeddings, names)


def _write_embeddings(out: Path, embeddings: np.ndarray, names: list[str]) -> tuple[Path, Path]:
    listing = out.with_suffix(".txt")
    # one set: a failure leaves the old .npy and its list, never a new .npy beside a stale list
    with atomic_paths(out, listing) as (npy_tmp, listing_tmp):
        with npy_tmp.open("wb") as handle:
            np.save(handle, _normalise(embeddings).astype(np.float32))
        listing_tmp.write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    return out, listing


def embed_folder_detected(
    model: torch.nn.Module,
    folder: str | Path,
    out: str | Path,
    *,
    face: str = "central",
    flip: str | None = "concat",
    batch_size: int = 64,
    num_workers: int = 2,
    progress: bool = True,
    skip_bad_images: bool = False,
) -> tuple[Path, Path, DetectionReport]:
    """:func:`embed_folder` from raw photos: each image's ``face`` (central / largest) is
    detected (MTCNN) and aligned to the model's template. Images with no face get no row (the
    listing names the rows); the report counts and names them. Writes ``out`` with suffix
    ``.detect.json`` (the report) too."""
    folder, out = Path(folder), Path(out)
    _, template, _ = model_preprocessing(model)
    items = relative_items(list_image_tree(folder), folder)
    aligned, report = detect_and_align(items, template, policy=face, num_workers=num_workers,
                                       progress=progress, skip_bad_images=skip_bad_images)
    if not aligned:
        raise ValueError(f"no face found in any of the {len(items)} images under {folder}")
    result = compute_embeddings(model, aligned, flip=flip, batch_size=batch_size,
                                num_workers=0, progress=progress, desc="embed")
    npy, listing = _write_embeddings(out, result.embeddings, [item.name for item in aligned])
    atomic_write_text(out.with_suffix(".detect.json"), json.dumps(report.to_dict(), indent=1))
    return npy, listing, report


@dataclass
class VerifyResult:
    """Cosine ``score`` of the two faces; ``same`` is ``score > threshold`` (None: no threshold)."""

    score: float
    threshold: float | None
    same: bool | None


def verify_images(
    model: torch.nn.Module,
    image_a: str | Path,
    image_b: str | Path,
    *,
    landmarks_a: np.ndarray | None = None,
    landmarks_b: np.ndarray | None = None,
    threshold: float | None = None,
    flip: str | None = "concat",
    detect: str | None = None,
) -> VerifyResult:
    """Cosine similarity of two faces (aligned crops, or aligned here from 5 landmarks each).

    ``detect`` ("central" / "largest"): detect that face in each raw photo and align it from the
    detected landmarks instead (given landmarks are ignored); no face in an image is an error
    naming it.
    """
    for image in (image_a, image_b):
        if not Path(image).is_file():
            raise FileNotFoundError(f"image {image} does not exist")
    if detect is not None:
        _, template, _ = model_preprocessing(model)
        named = [(Path(image_a), str(image_a)), (Path(image_b), str(image_b))]
        items, report = detect_and_align(named, template, policy=detect, num_workers=0,
                                         progress=False)
        if report.no_face:
            raise ValueError(f"no face found in image {report.no_face[0]}")
    else:
        items = [
            ImageItem(Path(image_a), str(image_a), landmarks_a),
            ImageItem(Path(image_b), str(image_b), landmarks_b),
        ]
    result = compute_embeddings(model, items, flip=flip, num_workers=0, progress=False)
    unit = _normalise(result.embeddings.astype(np.float64))
    score = float(unit[0] @ unit[1])
    return VerifyResult(score, threshold, None if threshold is None else score > threshold)
