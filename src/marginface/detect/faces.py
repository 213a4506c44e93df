"""One detected face: box, score and 5 landmarks in the original image's pixel coordinates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Face", "LANDMARK_NAMES"]

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True)
class Face:
    """``box`` (x1, y1, x2, y2) and ``landmarks`` (5, 2) as (x, y) pixel indices (pixel (i, j) has
    its centre at x = j, y = i), in the order of :data:`LANDMARK_NAMES`; ``score`` is O-Net's
    face probability."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(x2 - x1, 0.0) * max(y2 - y1, 0.0)

    @property
    def center(self) -> tuple[float, float]:
        x1, y1, x2, y2 = self.box
        return (x1 + x2) / 2.0, (y1 + y2) / 2.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"box": [...], "score": s, "landmarks": [[x, y] x 5]}`` (2 decimals)."""
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 5),
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
        }
