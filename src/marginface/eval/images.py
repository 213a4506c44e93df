"""Image files in, results out: a folder to an embeddings file, two images to a score
(``marginface embed`` / ``verify``). Formerly ``marginface.eval.inference``."""

from __future__ import annotations

import json
import math
import warnings
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
from marginface.eval.embed import (
    NonFiniteEmbeddingError,
    check_finite_embeddings,
    compute_embeddings,
    model_preprocessing,
)

__all__ = ["embed_folder", "embed_folder_detected", "VerifyResult", "verify_images",
           "NonFiniteEmbeddingError", "escape_listing_name"]


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def escape_listing_name(name: str) -> str:
    """One line of the deprecated ``.txt`` listing: backslash, newline and carriage return
    escaped as ``\\\\``, ``\\n`` and ``\\r`` (the ``.json`` listing needs no escaping)."""
    return name.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


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
    center_crop: bool = False,
    skip_bad_images: bool = False,
) -> tuple[Path, Path]:
    """L2-normalised embeddings of every image under ``folder`` (recursive, sorted) to ``out``.

    Writes ``out`` (.npy, float32 (N, D)) and ``out`` with suffix ``.json`` beside it: a JSON
    array (UTF-8) of the images' paths relative to ``folder``, in row order; returns both paths.
    The ``.txt`` listing (one path per line, see :func:`escape_listing_name`) is still written,
    deprecated: it is removed after the next release. Images are aligned from the landmarks file
    when it has them, else must be aligned crops of the model's input size
    (:class:`~marginface.data.align.NotAlignedError` naming the first that is not), unless
    ``center_crop``. Unreadable or too small images are an error naming them, or with
    ``skip_bad_images`` get no row (the listing names the rows; a warning names them).
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
        center_crop=center_crop,
        skip_bad_images=skip_bad_images,
    )
    good = [i for i in range(len(items)) if i not in result.failed]
    if result.failed:
        listed = "; ".join(f"{names[i]}: {e}" for i, e in list(result.failed.items())[:20])
        warnings.warn(f"skipped {len(result.failed)} unreadable or too small image(s), no row "
                      f"for them: {listed}", UserWarning, stacklevel=2)
    if not good:
        raise ValueError(f"none of the {len(items)} images under {folder} could be read")
    return _write_embeddings(out, result.embeddings[good], [names[i] for i in good])


def _write_embeddings(out: Path, embeddings: np.ndarray, names: list[str]) -> tuple[Path, Path]:
    check_finite_embeddings(embeddings, names)
    out.parent.mkdir(parents=True, exist_ok=True)
    listing = out.with_suffix(".json")
    # one set: a failure leaves the old .npy and its lists, never a new .npy beside a stale list
    with atomic_paths(out, listing, out.with_suffix(".txt")) as (npy_tmp, json_tmp, txt_tmp):
        with npy_tmp.open("wb") as handle:
            np.save(handle, _normalise(embeddings).astype(np.float32))
        json_tmp.write_text(json.dumps(names, ensure_ascii=False, indent=0) + "\n",
                            encoding="utf-8")
        txt_tmp.write_text("".join(f"{escape_listing_name(n)}\n" for n in names),
                           encoding="utf-8")
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
    center_crop: bool = False,
) -> VerifyResult:
    """Cosine similarity of two faces (aligned crops, or aligned here from 5 landmarks each).

    ``detect`` ("central" / "largest"): detect that face in each raw photo and align it from the
    detected landmarks instead (given landmarks are ignored); no face in an image is an error
    naming it. An image that is neither an aligned crop of the model's input size nor given
    landmarks is a :class:`~marginface.data.align.NotAlignedError` naming it, unless
    ``center_crop``. An unreadable or too small image (below
    :data:`~marginface.data.decoding.MIN_IMAGE_SIDE`) is an error naming it; a NaN or infinite
    embedding or score is a :class:`NonFiniteEmbeddingError`, never a decision. ``threshold``
    must be finite.
    """
    if threshold is not None and not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold}")
    for image in (image_a, image_b):
        if not Path(image).is_file():
            kind = "is a directory, not an image" if Path(image).is_dir() else "does not exist"
            raise FileNotFoundError(f"image {image} {kind}")
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
    result = compute_embeddings(model, items, flip=flip, num_workers=0, progress=False,
                                center_crop=center_crop, skip_hint=False)
    check_finite_embeddings(result.embeddings, [str(image_a), str(image_b)])
    unit = _normalise(result.embeddings.astype(np.float64))
    score = float(unit[0] @ unit[1])
    if not math.isfinite(score):
        raise NonFiniteEmbeddingError(f"the score of {image_a} and {image_b} is {score}: "
                                      f"nothing is decided from it")
    return VerifyResult(score, threshold, None if threshold is None else score > threshold)
