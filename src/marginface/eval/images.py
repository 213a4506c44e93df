"""Image files in, results out: a folder to an embeddings file, two images to a score
(``marginface embed`` / ``verify``). Formerly ``marginface.eval.inference``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from marginface.data.imagefolder import list_image_tree
from marginface.data.lfw import read_landmarks
from marginface.data.pairs import ImageItem
from marginface.eval.embed import compute_embeddings

__all__ = ["embed_folder", "VerifyResult", "verify_images"]


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
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, _normalise(result.embeddings).astype(np.float32))
    listing = out.with_suffix(".txt")
    listing.write_text("\n".join(names) + "\n")
    return out, listing


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
) -> VerifyResult:
    """Cosine similarity of two faces (aligned crops, or aligned here from 5 landmarks each)."""
    items = [
        ImageItem(Path(image_a), str(image_a), landmarks_a),
        ImageItem(Path(image_b), str(image_b), landmarks_b),
    ]
    for item in items:
        if not Path(item.source).is_file():
            raise FileNotFoundError(f"image {item.name} does not exist")
    result = compute_embeddings(model, items, flip=flip, num_workers=0, progress=False)
    unit = _normalise(result.embeddings.astype(np.float64))
    score = float(unit[0] @ unit[1])
    return VerifyResult(score, threshold, None if threshold is None else score > threshold)
