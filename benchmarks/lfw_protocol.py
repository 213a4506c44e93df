"""A minimal LFW verification check for benchmarks: 5-point alignment of the original LFW
images and the 10-fold protocol on cosine similarity (SPEC.md section 7).

Used by bench_backbones.py to show that a fast inference path keeps the LFW accuracy of
plain eager PyTorch; the library's own alignment and evaluation belong to marginface.data /
marginface.eval.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

# SphereFace 112x96 template; the ArcFace 112x112 one is the same with x + 8.
TEMPLATE_112x96 = np.array(
    [[30.2946, 51.6963], [65.5318, 51.5014], [48.0252, 71.7366], [33.5493, 92.3655],
     [62.7299, 92.2041]]
)


def read_pairs(lfw: Path, limit: int | None = None) -> tuple[list[tuple[str, str]], np.ndarray]:
    """(path_a, path_b) pairs and same/different labels from pairs.txt, in file order."""
    pairs, same = [], []
    with open(lfw / "pairs.txt") as handle:
        next(handle)
        for line in handle:
            parts = line.split()
            if len(parts) == 3:
                a, b, flag = (parts[0], int(parts[1])), (parts[0], int(parts[2])), True
            elif len(parts) == 4:
                a, b, flag = (parts[0], int(parts[1])), (parts[2], int(parts[3])), False
            else:
                continue
            pairs.append(tuple(f"{name}/{name}_{index:04d}.jpg" for name, index in (a, b)))
            same.append(flag)
            if limit is not None and len(pairs) == limit:
                break
    return pairs, np.array(same)


def read_landmarks(lfw: Path) -> dict[str, np.ndarray]:
    points = {}
    with open(lfw / "lfw_landmark.txt") as handle:
        for line in handle:
            parts = line.split()
            points[parts[0]] = np.array([float(v) for v in parts[1:11]]).reshape(5, 2)
    return points


def align(image: Image.Image, points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Similarity-warp ``image`` so ``points`` land on the template; (H, W, 3) uint8 RGB."""
    template = TEMPLATE_112x96 + np.array([(size[1] - 96) / 2, 0.0])
    rows, rhs = [], []
    for (x, y), (u, v) in zip(template, points, strict=True):
        rows += [[x, -y, 1, 0], [y, x, 0, 1]]
        rhs += [u, v]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    warped = image.convert("RGB").transform(
        (size[1], size[0]), Image.Transform.AFFINE, (a, -b, tx, b, a, ty),
        resample=Image.Resampling.BILINEAR,
    )
    return np.asarray(warped)


def load_faces(lfw: Path, paths: list[str], size: tuple[int, int]) -> torch.Tensor:
    """Aligned faces for ``paths`` as (N, 3, H, W) float pixels in [0, 255]."""
    landmarks = read_landmarks(lfw)
    faces = np.stack([align(Image.open(lfw / "images" / p), landmarks[p], size) for p in paths])
    return torch.from_numpy(faces).permute(0, 3, 1, 2).float()


def ten_fold_accuracy(similarity: np.ndarray, same: np.ndarray, folds: int = 10) -> float:
    """Mean held-out accuracy; each fold's threshold is the best on the other folds."""
    thresholds = np.arange(-1.0, 1.0, 0.001)
    correct = (similarity[None, :] > thresholds[:, None]) == same[None, :]
    index = np.arange(len(same)) * folds // len(same)
    accuracies = []
    for fold in range(folds):
        train = index != fold
        best = np.argmax(correct[:, train].mean(axis=1))
        accuracies.append(correct[best, ~train].mean())
    return float(np.mean(accuracies))
