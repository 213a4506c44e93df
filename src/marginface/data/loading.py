"""``load_pairs(spec)``: one entry point for the verification set specs of ``marginface evaluate``.

``lfw:DIR`` (LFW folder: images/, pairs.txt, lfw_landmark.txt if present), ``PATH.bin``
(insightface), anything else a pairs list (``path_a path_b 0|1 [fold]`` per line).
"""

from __future__ import annotations

from pathlib import Path

from marginface.data.binset import load_bin
from marginface.data.lfw import load_lfw, read_landmarks
from marginface.data.pairs import PairSet, load_pairs_list

__all__ = ["load_pairs"]


def load_pairs(
    spec: str | Path,
    *,
    landmarks_file: str | Path | None = None,
    skip_bad_images: bool = False,
) -> PairSet:
    """Load a verification pair set from ``lfw:DIR``, a ``.bin`` or a pairs list file."""
    text = str(spec)
    if not text.strip():
        raise ValueError("the pairs spec is empty (use lfw:DIR, PATH.bin or a pairs list file)")
    if text.startswith("lfw:"):
        return load_lfw(text[4:], landmarks_file=landmarks_file, skip_bad_images=skip_bad_images)
    path = Path(text)
    if path.suffix.lower() == ".bin":
        if landmarks_file is not None:
            raise ValueError(
                f"a .bin holds aligned faces; landmarks_file makes no sense for {path}"
            )
        return load_bin(path)
    if not path.exists():
        raise FileNotFoundError(
            f"pairs spec {text!r}: no such file (use lfw:DIR, PATH.bin or a pairs list file)"
        )
    landmarks = read_landmarks(landmarks_file) if landmarks_file else None
    return load_pairs_list(path, landmarks=landmarks, skip_bad_images=skip_bad_images)
