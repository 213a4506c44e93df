"""5-point face alignment: least-squares similarity transform to a template, bilinear warp.

The transform is Umeyama's (IEEE TPAMI 1991) closed-form least-squares similarity
``y = s R x + t`` (rotation, uniform scale, translation; reflection excluded) mapping the five
landmarks (left eye, right eye, nose, left and right mouth corner) onto a template of
:mod:`marginface.templates` (re-exported here): SphereFace's 112x96 template (Liu et al. 2017), or
ArcFace's 112x112 (Deng et al. 2019; the same points with x + 8). See docs/data.md, "Alignment".
Batch alignment of folders and pair sets is :mod:`marginface.data.align_batch`.

Coordinates are pixel indices (pixel (i, j) has its centre at x = j, y = i), as landmark files and
the templates use them. The warp samples the source bilinearly at ``M^-1 (x, y)`` for every output
pixel, using Pillow's C affine transform with the half-pixel shift it needs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from marginface.data.decoding import check_image_size, decode_image, open_image, upright_size
from marginface.templates import TEMPLATES, template_for_size, template_points, template_size

__all__ = [
    "TEMPLATES",
    "template_points",
    "template_size",
    "similarity_transform",
    "warp_affine",
    "align_face",
    "center_crop",
    "load_aligned",
    "NotAlignedError",
]


class NotAlignedError(ValueError):
    """An image that is neither an aligned crop of the model's input size nor given landmarks,
    where centre crops are not allowed; the message names the file and the options
    (``--detect``, ``--landmarks``, ``--center-crop``)."""

def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 matrix ``M = [sR | t]`` minimising ``sum |s R src_i + t - dst_i|^2`` (det R = +1).

    Umeyama 1991: with centred points and ``Sigma = dst_c^T src_c / n = U D V^T``,
    ``R = U S V^T`` (S flips the last axis when ``det(Sigma) < 0``), ``s = tr(D S) / var(src)``,
    ``t = mean(dst) - s R mean(src)``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"src and dst must both be (n >= 2, 2), got {src.shape} and {dst.shape}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError("landmarks must be finite")
    mean_src, mean_dst = src.mean(0), dst.mean(0)
    src_c, dst_c = src - mean_src, dst - mean_dst
    var_src = (src_c**2).sum() / len(src)
    if var_src <= 1e-12:
        raise ValueError(f"landmarks are degenerate (all points coincide): {src.tolist()}")
    sigma = dst_c.T @ src_c / len(src)
    u, d, vt = np.linalg.svd(sigma)
    s = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        s[-1] = -1.0
    rotation = u @ np.diag(s) @ vt
    scale = float((d * s).sum() / var_src)
    translation = mean_dst - scale * rotation @ mean_src
    return np.hstack([scale * rotation, translation[:, None]])


def warp_affine(image: Image.Image, matrix: np.ndarray, size_hw: tuple[int, int]) -> Image.Image:
    """Output pixel (x, y) = bilinear sample of ``image`` at ``M^-1 (x, y)`` (pixel indices)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    a = inverse[:, :2]
    # Pillow maps pixel-centre coordinates (index + 0.5); convert the index-space inverse.
    offset = inverse[:, 2] + 0.5 - a @ np.array([0.5, 0.5])
    data = (a[0, 0], a[0, 1], offset[0], a[1, 0], a[1, 1], offset[1])
    height, width = size_hw
    return image.transform(
        (width, height), Image.Transform.AFFINE, data, resample=Image.Resampling.BILINEAR
    )


def align_face(image: Image.Image, landmarks: np.ndarray, template: str) -> Image.Image:
    """Warp ``image`` so that its 5 ``landmarks`` (x, y) land on ``template``."""
    points, size = template_points(template), template_size(template)
    landmarks = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    return warp_affine(image, similarity_transform(landmarks, points), size)


def center_crop(image: Image.Image, size_hw: tuple[int, int]) -> Image.Image:
    """Fallback without landmarks: the largest centred box of the output's aspect, resized."""
    height, width = size_hw
    scale = min(image.width / width, image.height / height)
    box_w, box_h = width * scale, height * scale
    left, top = (image.width - box_w) / 2, (image.height - box_h) / 2
    return image.resize(
        (width, height), Image.Resampling.BILINEAR, box=(left, top, left + box_w, top + box_h)
    )


def _not_aligned(label: str, size_wh: tuple[int, int], size_hw: tuple[int, int]) -> str:
    return (f"{label}: image is {size_wh[0]}x{size_wh[1]}, not an aligned {size_hw[1]}x"
            f"{size_hw[0]} crop of the model's input: pass --detect (find and align the face), "
            f"--landmarks FILE (align it from its 5 points) or --center-crop (take its centre "
            f"crop unaligned)")


def load_aligned(
    source: str | Path | bytes | Image.Image,
    template: str,
    landmarks: np.ndarray | None = None,
    *,
    allow_center_crop: bool = True,
    name: str | None = None,
) -> tuple[Image.Image, str]:
    """Decode and align one face; returns ``(image, method)``.

    ``method`` is ``"landmarks"`` (warped from its 5 points), ``"template"`` (the image has a
    template's size and is taken as an aligned crop, mapped onto ``template``: 112x112 ArcFace ->
    112x96 SphereFace is the central 96 columns; any ``landmarks`` given for it are ignored, the
    caller warns), or ``"center"`` (no landmarks: centre-crop fallback, to be counted). With
    ``allow_center_crop=False`` that fallback is a :class:`NotAlignedError` instead, raised from
    the header before the pixels are decoded. Decoding is
    :func:`marginface.data.decoding.decode_image`; an image below
    :data:`~marginface.data.decoding.MIN_IMAGE_SIDE` pixels on a side is a
    :class:`~marginface.data.decoding.BadImageError`; ``name`` labels the image in errors.
    A JPEG is decoded at a reduced size (``Image.draft``) when the warp shrinks it by 2x or more.
    """
    points, size_hw = template_points(template), template_size(template)
    label = name or (str(source) if isinstance(source, (str, Path)) else "<image>")
    opened = source if isinstance(source, Image.Image) else open_image(source, name)
    full_w, full_h = upright_size(opened)
    known = template_for_size((full_h, full_w))
    try:
        check_image_size((full_w, full_h), label)
        if landmarks is None and known is None and not allow_center_crop:
            raise NotAlignedError(_not_aligned(label, (full_w, full_h), size_hw))
    except ValueError:
        if opened is not source:  # refused from the header: release the file now
            opened.close()
        raise
    if landmarks is not None and known is None:
        try:
            landmarks = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
            matrix = similarity_transform(landmarks, points)
        except ValueError as error:  # NaN, degenerate or malformed points: name the image
            raise ValueError(f"{label}: {error}") from None
        scale = math.hypot(matrix[0, 0], matrix[0, 1])
        draft = (math.ceil(full_w * scale), math.ceil(full_h * scale)) if scale < 0.5 else None
        image = decode_image(opened, draft, name=label)
        if image.size != (full_w, full_h):
            ratio = np.array([image.width / full_w, image.height / full_h])
            landmarks = (landmarks + 0.5) * ratio - 0.5
        return align_face(image, landmarks, template), "landmarks"
    image = decode_image(opened, name=label)
    if known is None:
        return center_crop(image, size_hw), "center"
    if image.size == (size_hw[1], size_hw[0]):
        return image, "template"
    matrix = similarity_transform(TEMPLATES[known][0], points)
    shift = np.round(matrix[:, 2])
    if np.allclose(matrix, np.c_[np.eye(2), shift], atol=1e-6):
        # an integer shift (ArcFace <-> SphereFace): an exact crop, no resampling
        left, top = -int(shift[0]), -int(shift[1])
        box = (left, top, left + size_hw[1], top + size_hw[0])
        return image.crop(box), "template"
    return warp_affine(image, matrix, size_hw), "template"
