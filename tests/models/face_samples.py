"""Real aligned faces for model tests: LFW images aligned with a 5-point similarity transform.

A test helper only (the library's own alignment belongs to marginface.data); it reads
../shared/data/lfw and never writes anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

# SphereFace 112x96 template (SPEC section 7); the ArcFace 112x112 one is x + 8.
TEMPLATE_112x96 = np.array(
    [[30.2946, 51.6963], [65.5318, 51.5014], [48.0252, 71.7366], [33.5493, 92.3655],
     [62.7299, 92.2041]]
)


def _similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, float, float, float]:
    """Least-squares (a, b, tx, ty) with dst ~ [[a, -b], [b, a]] @ src + t."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst, strict=True):
        rows += [[x, -y, 1, 0], [y, x, 0, 1]]
        rhs += [u, v]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    return a, b, tx, ty


def aligned_lfw_faces(
    shared_dir: Path, count: int, size: tuple[int, int] = (112, 96)
) -> torch.Tensor:
    """The first ``count`` LFW images of lfw_landmark.txt, aligned, as (N, 3, H, W) RGB pixels."""
    lfw = shared_dir / "data" / "lfw"
    template = TEMPLATE_112x96 + np.array([(size[1] - 96) / 2, 0.0])
    faces = []
    with open(lfw / "lfw_landmark.txt") as handle:
        for line in handle:
            parts = line.split()
            points = np.array([float(v) for v in parts[1:11]]).reshape(5, 2)
            # PIL maps output pixels to input pixels, so fit template -> landmarks.
            a, b, tx, ty = _similarity(template, points)
            image = Image.open(lfw / "images" / parts[0]).convert("RGB")
            warped = image.transform(
                (size[1], size[0]), Image.Transform.AFFINE, (a, -b, tx, b, a, ty),
                resample=Image.Resampling.BILINEAR,
            )
            faces.append(torch.from_numpy(np.asarray(warped).copy()).permute(2, 0, 1))
            if len(faces) == count:
                break
    return torch.stack(faces).float()
