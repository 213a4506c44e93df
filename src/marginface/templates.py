"""The 5-point alignment templates and the one input size -> template table.

A template is five landmarks (left eye, right eye, nose, left and right mouth corner) as (x, y)
pixel indices in an aligned crop of a fixed size (H, W):

- ``sphereface_112x96``: SphereFace's 112x96 crop (Liu et al., "SphereFace", CVPR 2017, whose
  released code aligns faces to these points);
- ``arcface_112x112``: insightface's 112x112 crop (Deng et al., "ArcFace", CVPR 2019), the same
  points shifted right by 8 pixels.

Both the data package (alignment) and the model registry (a model's default template for its
input size) read this table, so it lives below both. See docs/data.md, "Alignment".
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ARCFACE_TEMPLATE",
    "SPHEREFACE_TEMPLATE",
    "TEMPLATES",
    "template_for_size",
    "template_points",
    "template_size",
]

SPHEREFACE_TEMPLATE = "sphereface_112x96"
ARCFACE_TEMPLATE = "arcface_112x112"

_SPHEREFACE_POINTS = np.array(
    [
        [30.2946, 51.6963],
        [65.5318, 51.5014],
        [48.0252, 71.7366],
        [33.5493, 92.3655],
        [62.7299, 92.2041],
    ],
    dtype=np.float64,
)
# name -> (points (5, 2) as x, y; output size (H, W)); each size has at most one template.
TEMPLATES: dict[str, tuple[np.ndarray, tuple[int, int]]] = {
    SPHEREFACE_TEMPLATE: (_SPHEREFACE_POINTS, (112, 96)),
    ARCFACE_TEMPLATE: (_SPHEREFACE_POINTS + np.array([8.0, 0.0]), (112, 112)),
}


def _entry(name: str) -> tuple[np.ndarray, tuple[int, int]]:
    if name not in TEMPLATES:
        raise ValueError(f"template must be one of {sorted(TEMPLATES)}, got {name!r}")
    return TEMPLATES[name]


def template_points(name: str) -> np.ndarray:
    """The (5, 2) template landmarks (x, y) of ``name`` (a copy)."""
    return _entry(name)[0].copy()


def template_size(name: str) -> tuple[int, int]:
    """Output size (H, W) of template ``name``."""
    return _entry(name)[1]


def template_for_size(size_hw: tuple[int, int]) -> str | None:
    """The template whose crop is ``size_hw`` (H, W): 112x96 -> SphereFace, 112x112 -> ArcFace;
    None for any other size (no standard template)."""
    size = (int(size_hw[0]), int(size_hw[1]))
    for name, (_, hw) in TEMPLATES.items():
        if hw == size:
            return name
    return None
