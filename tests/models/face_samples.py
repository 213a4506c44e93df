"""Real aligned faces for model tests: LFW images aligned by marginface.data.

A test helper only; it reads ../shared/data/lfw and never writes anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from marginface.data import align_face, read_landmarks
from marginface.templates import template_for_size


def aligned_lfw_faces(
    shared_dir: Path, count: int, size: tuple[int, int] = (112, 96)
) -> torch.Tensor:
    """The first ``count`` LFW images of lfw_landmark.txt, aligned, as (N, 3, H, W) RGB pixels."""
    lfw = shared_dir / "data" / "lfw"
    landmarks = read_landmarks(lfw / "lfw_landmark.txt")
    faces = []
    for path, points in list(landmarks.items())[:count]:
        with Image.open(lfw / "images" / path) as image:
            face = align_face(image.convert("RGB"), points, template_for_size(size))
        faces.append(torch.from_numpy(np.asarray(face).copy()).permute(2, 0, 1))
    return torch.stack(faces).float()
