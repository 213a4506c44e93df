"""Alignment: Umeyama against known similarity transforms, the warp, templates, fallbacks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from marginface.data.align import (
    TEMPLATES,
    center_crop,
    load_aligned,
    similarity_transform,
    template_points,
    template_size,
    warp_affine,
)


def _similarity(scale, angle, tx, ty):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[scale * c, -scale * s, tx], [scale * s, scale * c, ty]])


@settings(max_examples=60, deadline=None)
@given(
    st.floats(0.2, 5.0),
    st.floats(-3.1, 3.1),
    st.floats(-100, 100),
    st.floats(-100, 100),
    st.integers(0, 10_000),
)
def test_recovers_known_similarity(scale, angle, tx, ty, seed):
    src = np.random.default_rng(seed).uniform(0, 250, (5, 2))
    truth = _similarity(scale, angle, tx, ty)
    dst = src @ truth[:, :2].T + truth[:, 2]
    np.testing.assert_allclose(similarity_transform(src, dst), truth, atol=1e-6 * (1 + scale))


def test_least_squares_with_noise_and_no_reflection():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, (5, 2))
    truth = _similarity(0.7, 0.3, 10, -5)
    dst = src @ truth[:, :2].T + truth[:, 2] + rng.normal(0, 0.5, (5, 2))
    estimate = similarity_transform(src, dst)
    residual = np.linalg.norm(src @ estimate[:, :2].T + estimate[:, 2] - dst)
    # the true transform cannot fit better than the least-squares optimum
    assert residual <= np.linalg.norm(src @ truth[:, :2].T + truth[:, 2] - dst) + 1e-9
    # a mirrored target: the fit stays a rotation (det > 0), never a reflection
    mirrored = dst * np.array([-1.0, 1.0])
    assert np.linalg.det(similarity_transform(src, mirrored)[:, :2]) > 0
    with pytest.raises(ValueError, match="degenerate"):
        similarity_transform(np.ones((5, 2)), dst)
    with pytest.raises(ValueError, match="shape|must both"):
        similarity_transform(src[:4], dst)


def test_templates_match_spec():
    sphere = template_points("sphereface_112x96")
    np.testing.assert_allclose(sphere[0], [30.2946, 51.6963])
    np.testing.assert_allclose(template_points("arcface_112x112"), sphere + [8, 0])
    assert template_size("arcface_112x112") == (112, 112)
    assert template_size("sphereface_112x96") == (112, 96)
    with pytest.raises(ValueError, match="template must be one of"):
        template_size("vggface")


def _reference_warp(
    image: np.ndarray, matrix: np.ndarray, size_hw
) -> tuple[np.ndarray, np.ndarray]:
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
    ys, xs = np.mgrid[0 : size_hw[0], 0 : size_hw[1]]
    sx = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    sy = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    inside = (x0 >= 0) & (y0 >= 0) & (x0 + 1 < image.shape[1]) & (y0 + 1 < image.shape[0])
    x0 = np.clip(x0, 0, image.shape[1] - 2)
    y0 = np.clip(y0, 0, image.shape[0] - 2)
    im = image.astype(np.float64)
    out = (
        im[y0, x0] * (1 - fx) * (1 - fy)
        + im[y0, x0 + 1] * fx * (1 - fy)
        + im[y0 + 1, x0] * (1 - fx) * fy
        + im[y0 + 1, x0 + 1] * fx * fy
    )
    return out, inside


def test_warp_is_bilinear_sampling_at_inverse_map():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    matrix = _similarity(1.3, 0.3, 5.2, -7.1)
    warped = np.asarray(warp_affine(Image.fromarray(image), matrix, (50, 40)), dtype=np.float64)
    reference, inside = _reference_warp(image, matrix, (50, 40))
    assert inside.sum() > 1000
    assert np.abs(warped - reference)[inside].max() <= 1.0  # uint8 rounding


def test_align_puts_landmarks_on_template():
    # draw 5 bright dots at known positions of a rotated, scaled face; after alignment each dot
    # must sit on its template point
    template = template_points("arcface_112x112")
    truth = _similarity(0.55, -0.4, 20.0, 30.0)  # template -> image
    points = template @ truth[:, :2].T + truth[:, 2]
    canvas = np.zeros((200, 200, 3), dtype=np.uint8)
    for x, y in points:
        canvas[int(round(y)) - 1 : int(round(y)) + 2, int(round(x)) - 1 : int(round(x)) + 2] = 255
    # landmarks at the dot centres (integer-rounded)
    image, method = load_aligned(Image.fromarray(canvas), "arcface_112x112", np.round(points))
    assert method == "landmarks" and image.size == (112, 112)
    gray = np.asarray(image, dtype=np.float64)[..., 0]
    for x, y in template:
        ys, xs = np.mgrid[int(y) - 5 : int(y) + 6, int(x) - 5 : int(x) + 6]
        weights = gray[ys, xs]
        centre = np.array([(weights * xs).sum(), (weights * ys).sum()]) / weights.sum()
        assert np.linalg.norm(centre - [x, y]) < 1.0


def test_fallbacks_and_template_conversion(tmp_path):
    rng = np.random.default_rng(3)
    arc = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
    path = tmp_path / "arc.png"
    Image.fromarray(arc).save(path)
    # an aligned 112x112 ArcFace crop -> 112x96 SphereFace: the central 96 columns
    sphere, method = load_aligned(path, "sphereface_112x96")
    assert method == "template"
    np.testing.assert_array_equal(np.asarray(sphere), arc[:, 8:104])
    same, method = load_aligned(path, "arcface_112x112")
    assert method == "template"
    np.testing.assert_array_equal(np.asarray(same), arc)
    raw = Image.fromarray(rng.integers(0, 256, (250, 250, 3), dtype=np.uint8))
    cropped, method = load_aligned(raw, "sphereface_112x96")
    assert method == "center" and cropped.size == (96, 112)
    np.testing.assert_array_equal(np.asarray(cropped), np.asarray(center_crop(raw, (112, 96))))
    assert set(TEMPLATES) == {"arcface_112x112", "sphereface_112x96"}


def test_jpeg_draft_decoding_keeps_landmarks_consistent(tmp_path):
    # a big JPEG whose face must shrink 4x: decoded in draft mode, same result up to JPEG noise
    rng = np.random.default_rng(4)
    small = rng.integers(0, 256, (25, 25, 3), dtype=np.uint8)
    big = Image.fromarray(small).resize((800, 800), Image.Resampling.NEAREST)
    path = tmp_path / "big.jpg"
    big.save(path, quality=98)
    template = template_points("arcface_112x112")
    truth = _similarity(6.0, 0.0, 50.0, 40.0)
    landmarks = template @ truth[:, :2].T + truth[:, 2]
    fast, _ = load_aligned(path, "arcface_112x112", landmarks)
    slow, _ = load_aligned(Image.open(path), "arcface_112x112", landmarks)
    difference = np.abs(np.asarray(fast, float) - np.asarray(slow, float))
    assert np.median(difference) < 12
