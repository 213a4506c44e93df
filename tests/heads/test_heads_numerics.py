"""Numerics: finite loss and gradients at cos = +-1 exactly and past m1*theta + m2 = pi, in
float64, float32, low-precision matmuls and bf16/fp16 autocast; monotone target logit."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
from heads_cases import (
    HEAD_FACTORIES,
    basis_weight,
    rotation_embeddings,
    single_thread,  # noqa: F401  (autouse fixture)
)
from hypothesis import given, settings
from hypothesis import strategies as st

from marginface.heads import CombinedMargin, SphereFace

# (compute dtype of the module, autocast dtype or None, matmul dtype)
PRECISIONS = {
    "float64": (torch.float64, None, torch.float32),
    "float32": (torch.float32, None, torch.float32),
    "autocast_bf16": (torch.float32, torch.bfloat16, torch.float32),
    "autocast_fp16": (torch.float32, torch.float16, torch.float32),
    "autocast_bf16_matmul_bf16": (torch.float32, torch.bfloat16, torch.bfloat16),
    "autocast_fp16_matmul_fp16": (torch.float32, torch.float16, torch.float16),
}


def _context(autocast_dtype):
    if autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=autocast_dtype)


def _run(head, emb_leaf, labels, precision):
    """Loss and gradients (embeddings, weight) under the precision regime, as a backbone would
    deliver embeddings (bf16/fp16 under autocast)."""
    dtype, autocast_dtype, _ = PRECISIONS[precision]
    with _context(autocast_dtype):
        emb = emb_leaf if autocast_dtype is None else emb_leaf.to(autocast_dtype)
        logits = head(emb, labels)
        loss = head.loss(emb, labels)
    assert logits.dtype == dtype and loss.dtype == dtype
    grads = torch.autograd.grad(loss, (emb_leaf, head.weight))
    return logits, loss, grads


def _build(name_or_head, precision, d=6, c=5):
    dtype, _, matmul_dtype = PRECISIONS[precision]
    head = name_or_head if not isinstance(name_or_head, str) else \
        HEAD_FACTORIES[name_or_head](d, c, matmul_dtype=matmul_dtype)
    head = head.to(dtype).train()
    with torch.no_grad():
        # K copies of each row for sub-centre heads: the max over them is the row itself
        head.weight.copy_(basis_weight(c, d, dtype).repeat_interleave(head.rows_per_class, 0))
    return head


@pytest.mark.parametrize("precision", list(PRECISIONS))
@pytest.mark.parametrize("name", list(HEAD_FACTORIES))
def test_finite_at_cos_exactly_plus_minus_one(name, precision):
    head = _build(name, precision)
    dtype = PRECISIONS[precision][0]
    eye = torch.eye(6, dtype=dtype)
    # cos(theta_y) = +1, -1, +1, -1, and a norm-3 row at +1 (SphereFace's |x|)
    emb = torch.stack([eye[0], -eye[0], eye[1], -eye[2], 3 * eye[3]]).requires_grad_()
    labels = torch.tensor([0, 0, 1, 2, 3])
    logits, loss, grads = _run(head, emb, labels, precision)
    assert torch.isfinite(logits).all() and torch.isfinite(loss)
    assert all(torch.isfinite(g).all() for g in grads)


MODES = st.sampled_from(list(PRECISIONS))


@settings(max_examples=60, deadline=None)
@given(
    m1=st.floats(0.05, 4.0),
    m2=st.floats(0.0, math.pi, exclude_max=True),
    m3=st.floats(0.0, 2.0),
    scale=st.floats(0.5, 128.0),
    theta=st.floats(0.0, math.pi),
    precision=MODES,
    detach=st.booleans(),
)
def test_combined_margin_loss_and_gradients_finite_everywhere(m1, m2, m3, scale, theta,
                                                              precision, detach):
    head = _build(CombinedMargin(6, 5, scale=scale, m1=m1, m2=m2, m3=m3, detach_margin=detach,
                                 matmul_dtype=PRECISIONS[precision][2]), precision)
    dtype = PRECISIONS[precision][0]
    # rows: cos_y = 1, cos_y = -1, angle theta, an angle just below pi (m1*theta + m2 > pi
    # whenever m1*pi + m2 > pi), and a random row
    angles = torch.tensor([0.0, math.pi, theta, math.pi - 1e-3], dtype=dtype)
    emb = torch.cat([rotation_embeddings(angles, 6), torch.randn(1, 6, dtype=dtype)])
    labels = torch.tensor([0, 0, 0, 0, 3])
    logits, loss, grads = _run(head, emb.requires_grad_(), labels, precision)
    assert torch.isfinite(logits).all() and torch.isfinite(loss)
    assert all(torch.isfinite(g).all() for g in grads)


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 4),
    base=st.floats(0.0, 1000.0),
    lambda_min=st.floats(0.0, 10.0),
    iteration=st.integers(0, 10**5),
    norm=st.floats(1e-3, 100.0),
    theta=st.floats(0.0, math.pi),
    precision=MODES,
)
def test_sphereface_loss_and_gradients_finite_everywhere(m, base, lambda_min, iteration, norm,
                                                         theta, precision):
    head = _build(SphereFace(6, 5, m=m, base=base, lambda_min=lambda_min, iteration=iteration,
                             matmul_dtype=PRECISIONS[precision][2]), precision)
    dtype = PRECISIONS[precision][0]
    angles = torch.tensor([0.0, math.pi, theta], dtype=dtype)
    emb = torch.cat([rotation_embeddings(angles, 6, norm), torch.zeros(1, 6, dtype=dtype)])
    logits, loss, grads = _run(head, emb.requires_grad_(), torch.tensor([0, 0, 0, 2]), precision)
    assert torch.isfinite(logits).all() and torch.isfinite(loss)
    assert all(torch.isfinite(g).all() for g in grads)


def _assert_target_non_increasing(head, emb, precision):
    """Target logit (class 0) must not rise as the angle grows. Rows are ordered by the cosine the
    head actually used (its eval-mode logit), so rounding of the inputs cannot fake a rise.
    SphereFace's logits carry the factor |x| (which bf16/fp16 inputs perturb): divided out."""
    dtype, autocast_dtype, _ = PRECISIONS[precision]
    labels = torch.zeros(emb.shape[0], dtype=torch.long)
    with torch.no_grad(), _context(autocast_dtype):
        x = emb if autocast_dtype is None else emb.to(autocast_dtype)
        target = head.train()(x, labels)[:, 0]
        plain = head.eval()(x)[:, 0]
        if isinstance(head, SphereFace):
            norms = x.to(dtype).norm(dim=1)
            target, plain = target / norms, plain / norms
    order = torch.sort(plain, descending=True, stable=True).indices
    target = target[order].double()
    # rounding of the float32 margin maths only; float64 is exact to 1e-12
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    tol = tol * (target.abs().max() + 1.0)
    rises = target[1:] - target[:-1]
    assert bool((rises <= tol).all()), f"target logit rises by {float(rises.max()):.3g}"
    # and plain cos is itself non-increasing in theta (up to input rounding)
    assert plain[0] >= plain[-1]


THETA_GRID = torch.linspace(0.0, math.pi, 721, dtype=torch.float64)


@settings(max_examples=60, deadline=None)
@given(
    m1=st.floats(0.05, 4.0),
    m2=st.floats(0.0, math.pi, exclude_max=True),
    m3=st.floats(0.0, 2.0),
    scale=st.floats(0.5, 128.0),
    precision=MODES,
)
def test_combined_margin_target_monotone_in_theta(m1, m2, m3, scale, precision):
    head = _build(CombinedMargin(6, 5, scale=scale, m1=m1, m2=m2, m3=m3,
                                 matmul_dtype=PRECISIONS[precision][2]), precision)
    emb = rotation_embeddings(THETA_GRID, 6).to(PRECISIONS[precision][0])
    _assert_target_non_increasing(head, emb, precision)


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 4),
    base=st.floats(0.0, 1000.0),
    lambda_min=st.floats(0.0, 10.0),
    iteration=st.integers(0, 10**5),
    norm=st.floats(1e-2, 100.0),
    precision=MODES,
)
def test_sphereface_target_monotone_in_theta(m, base, lambda_min, iteration, norm, precision):
    head = _build(SphereFace(6, 5, m=m, base=base, lambda_min=lambda_min, iteration=iteration,
                             matmul_dtype=PRECISIONS[precision][2]), precision)
    head.eval()  # the probe below must not advance lambda between the two calls
    emb = rotation_embeddings(THETA_GRID, 6, norm).to(PRECISIONS[precision][0])
    start = int(head.iteration)
    _assert_target_non_increasing(head, emb, precision)
    assert int(head.iteration) == start + 1  # the one training-mode call


@pytest.mark.parametrize("name", [n for n in HEAD_FACTORIES if n != "softmax"])
def test_float32_agrees_with_float64(name):
    emb = torch.randn(32, 6, dtype=torch.float64)
    labels = torch.randint(0, 5, (32,))
    h64 = HEAD_FACTORIES[name](6, 5).double().train()
    h32 = HEAD_FACTORIES[name](6, 5).train()
    h32.load_state_dict(h64.state_dict())
    out64 = h64(emb, labels)
    out32 = h32(emb.float(), labels)
    atol = 1e-4 * float(out64.detach().abs().max())
    torch.testing.assert_close(out32.double(), out64, rtol=1e-4, atol=atol)
