"""The fused blockwise loss equals the unfused logits + cross-entropy, values and gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from marginface import functional as MF
from marginface.heads import (
    ArcFace,
    CombinedMargin,
    CosFace,
    NormFace,
    Softmax,
    SphereFace,
)
from marginface.heads.fused import (
    fused_margin_cross_entropy,
    fused_softmax_cross_entropy,
    fused_sphereface_cross_entropy,
)
from marginface.heads.fused import loss as fused_mod
from marginface.heads.fused.blocks import choose_block_size

# (m1, m2, m3): NormFace, CosFace, ArcFace, combined, SphereFace-style multiplicative, and one
# whose m1*theta + m2 passes pi well inside [0, pi] (theta > (pi - 2)/2.5 ~ 0.46 rad).
MARGINS = [(1.0, 0.0, 0.0), (1.0, 0.0, 0.35), (1.0, 0.5, 0.0), (1.0, 0.3, 0.2),
           (1.35, 0.0, 0.0), (4.0, 0.0, 0.0), (2.5, 2.0, 0.1)]


def _data(batch=9, dim=6, classes=24, *, hard=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(classes, dim, generator=gen, dtype=torch.float64)
    y = torch.randint(0, classes, (batch,), generator=gen)
    y[0] = classes - 1  # a label in the last (partial) block
    x = torch.randn(batch, dim, generator=gen, dtype=torch.float64)
    if hard:  # embeddings near the opposite of their class: theta near pi
        x = -2.0 * w[y] + 0.3 * x
    return x.requires_grad_(), w.requires_grad_(), y


def _grads(loss, params):
    return torch.autograd.grad(loss, params)


def _assert_same(fused, ref, params, tol=1e-10):
    lf, lr = fused(), ref()
    torch.testing.assert_close(lf, lr, rtol=tol, atol=tol)
    for gf, gr in zip(_grads(lf, params), _grads(lr, params), strict=True):
        torch.testing.assert_close(gf, gr, rtol=tol, atol=tol)


@pytest.mark.parametrize("m1,m2,m3", MARGINS)
@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("block", [6, 7])  # divides 24; leaves a partial last block
@pytest.mark.parametrize("hard", [False, True])
def test_margin_matches_unfused(m1, m2, m3, detach, block, hard):
    x, w, y = _data(hard=hard)
    kw = dict(scale=16.0, m1=m1, m2=m2, m3=m3, detach_margin=detach)
    if hard and m1 * math.pi + m2 > math.pi:
        cos_y = F.cosine_similarity(x, w[y]).detach()
        assert bool((m1 * torch.acos(cos_y) + m2 > math.pi).any())
    _assert_same(
        lambda: fused_margin_cross_entropy(x, w, y, block_size=block, **kw),
        lambda: F.cross_entropy(MF.margin_logits(x, w, y, **kw), y),
        (x, w),
    )


@pytest.mark.parametrize("iteration", [1, 10, 100, 10_000])
@pytest.mark.parametrize("m", [1, 2, 4])
@pytest.mark.parametrize("block", [5, 24])
def test_sphereface_schedule_matches_unfused(iteration, m, block):
    lam = MF.sphereface_lambda(iteration)
    x, w, y = _data(hard=(iteration == 100))
    _assert_same(
        lambda: fused_sphereface_cross_entropy(3 * x, w, y, m=m, lambda_=lam, block_size=block),
        lambda: F.cross_entropy(MF.sphereface_logits(3 * x, w, y, m=m, lambda_=lam), y),
        (x, w),
    )


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("block", [3, 8, 64])
def test_softmax_matches_unfused(with_bias, block):
    x, w, y = _data()
    b = torch.randn(w.shape[0], dtype=torch.float64, requires_grad=True) if with_bias else None
    params = (x, w, b) if with_bias else (x, w)
    _assert_same(
        lambda: fused_softmax_cross_entropy(x, w, b, y, block_size=block),
        lambda: F.cross_entropy(F.linear(x, w, b), y),
        params,
    )


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 12), dim=st.integers(2, 9), classes=st.integers(1, 40),
    block=st.integers(1, 48), seed=st.integers(0, 10_000),
    margin=st.sampled_from(MARGINS), scale=st.floats(1.0, 64.0),
)
def test_margin_matches_unfused_random_shapes(batch, dim, classes, block, seed, margin, scale):
    x, w, y = _data(batch, dim, classes, seed=seed)
    kw = dict(scale=scale, m1=margin[0], m2=margin[1], m3=margin[2])
    _assert_same(
        lambda: fused_margin_cross_entropy(x, w, y, block_size=block, **kw),
        lambda: F.cross_entropy(MF.margin_logits(x, w, y, **kw), y),
        (x, w), tol=1e-9,
    )


def test_gradcheck_every_kind():
    x, w, y = _data(5, 4, 11)
    b = torch.randn(11, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, c: fused_margin_cross_entropy(a, c, y, scale=4.0, m1=1.35, m2=0.3, m3=0.2,
                                                block_size=4), (x, w))
    assert torch.autograd.gradcheck(
        lambda a, c: fused_sphereface_cross_entropy(a, c, y, m=4, lambda_=2.0, block_size=4),
        (x, w))
    assert torch.autograd.gradcheck(
        lambda a, c, d: fused_softmax_cross_entropy(a, c, d, y, block_size=4), (x, w, b))


def test_gradient_of_scaled_and_negated_loss():
    """Backward with grad_output != 1 (including negative) is linear in grad_output."""
    x, w, y = _data()
    for factor in (2.5, -0.7, 0.0):
        lf = fused_margin_cross_entropy(x, w, y, scale=8.0, m2=0.5, block_size=6) * factor
        lr = F.cross_entropy(MF.margin_logits(x, w, y, scale=8.0, m2=0.5), y) * factor
        for gf, gr in zip(_grads(lf, (x, w)), _grads(lr, (x, w)), strict=True):
            torch.testing.assert_close(gf, gr, rtol=1e-10, atol=1e-12)


def test_float32_matches_unfused():
    x, w, y = _data(32, 64, 1000)
    x32, w32 = x.detach().float().requires_grad_(), w.detach().float().requires_grad_()
    _assert_same(
        lambda: fused_margin_cross_entropy(x32, w32, y, scale=64.0, m2=0.5, block_size=256),
        lambda: F.cross_entropy(MF.margin_logits(x32, w32, y, scale=64.0, m2=0.5), y),
        (x32, w32), tol=2e-5,
    )


def test_underflowing_rows_fall_back_to_running_max():
    """All cosines near -1 with s = 64: exp(z - s) underflows in float32; the loss stays exact."""
    w = torch.randn(40, 8)
    x = -w[:4].clone() * 3
    y = torch.tensor([5, 6, 7, 8])
    w.requires_grad_()
    ref = F.cross_entropy(MF.margin_logits(x.double(), w.double(), y, scale=64.0, m3=0.35), y)
    out = fused_margin_cross_entropy(x, w, y, scale=64.0, m3=0.35, block_size=16)
    assert torch.isfinite(out)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-4)


# bfloat16 products: at D=128, C=2000, s=64 (ArcFace, CosFace) the relative loss error observed is
# 4.4e-5 at most and the gradients 1.1e-2 (relative norm; docs/large-class.md): allowed 1e-3, 3e-2.
def test_bfloat16_matmuls_within_tolerance():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(64, 128, generator=gen).requires_grad_()
    w = (0.01 * torch.randn(2000, 128, generator=gen)).requires_grad_()
    y = torch.randint(0, 2000, (64,), generator=gen)
    ref = fused_margin_cross_entropy(x, w, y, scale=64.0, m2=0.5, block_size=512)
    low = fused_margin_cross_entropy(x, w, y, scale=64.0, m2=0.5, block_size=512,
                                     matmul_dtype=torch.bfloat16)
    assert low.dtype == torch.float32
    assert abs(float(low.detach()) - float(ref.detach())) / float(ref.detach()) < 1e-3
    for gl, gr in zip(_grads(low, (x, w)), _grads(ref, (x, w)), strict=True):
        assert float((gl - gr).norm() / gr.norm()) < 3e-2


def test_block_size_rule():
    assert choose_block_size(512, 1_000_000, 512) % 256 == 0
    assert 256 <= choose_block_size(512, 1_000_000, 512) <= 1_000_000
    assert choose_block_size(4096, 10**6, 512) >= 256
    assert choose_block_size(8, 300, 16) == 512  # the class count rounded up to 256
    assert choose_block_size(8, 300, 16, block_size=7) == 7
    x, w, y = _data()
    a = fused_margin_cross_entropy(x, w, y, scale=8.0)
    b = fused_margin_cross_entropy(x, w, y, scale=8.0, block_size=3)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(labels=torch.tensor([0, 1, 23])), r"labels\[2\] = 23 is outside"),
        (dict(labels=torch.tensor([0, -1, 2])), r"labels\[1\] = -1"),
        (dict(labels=torch.tensor([0.0, 1.0, 2.0])), "integer"),
        (dict(labels=torch.tensor([0, 1])), "labels has 2 entries"),
        (dict(embeddings=torch.randn(3, 5)), r"shape \(batch, 6\)"),
        (dict(embeddings=torch.tensor([[0.0] * 6, [float("nan")] * 6, [1.0] * 6])), "row 1"),
        (dict(weight=torch.randn(23)), "weight must be"),
        (dict(scale=0.0), "scale"),
        (dict(m2=4.0), "m2"),
        (dict(m1=-1.0), "m1"),
        (dict(block_size=0), "block_size"),
        (dict(matmul_dtype=torch.int8), "matmul_dtype"),
    ],
)
def test_bad_input_fails_before_any_block(monkeypatch, kwargs, match):
    def no_blocks(*args, **kw):
        raise AssertionError("a block was computed before the input check")

    monkeypatch.setattr(fused_mod, "forward_lse", no_blocks)
    args = dict(embeddings=torch.randn(3, 6), weight=torch.randn(23, 6),
                labels=torch.tensor([0, 1, 2]), scale=8.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fused_margin_cross_entropy(args.pop("embeddings"), args.pop("weight"),
                                   args.pop("labels"), **args)


def test_bad_input_sphereface_and_softmax():
    x, w, y = torch.randn(3, 6), torch.randn(23, 6), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="m must be an integer"):
        fused_sphereface_cross_entropy(x, w, y, m=5)
    with pytest.raises(ValueError, match="lambda_"):
        fused_sphereface_cross_entropy(x, w, y, lambda_=-1.0)
    with pytest.raises(ValueError, match="bias must have shape"):
        fused_softmax_cross_entropy(x, w, torch.zeros(22), y)
    with pytest.raises(ValueError, match="0 rows"):
        fused_margin_cross_entropy(torch.randn(0, 6), w, y[:0], scale=8.0)


HEADS = [
    (Softmax, {}), (NormFace, {}), (CosFace, {}), (ArcFace, {}), (ArcFace, {"detach_margin": True}),
    (CombinedMargin, {"m1": 1.35, "m2": 0.3, "m3": 0.2}), (CombinedMargin, {"m1": 2.5, "m2": 2.0}),
    (SphereFace, {"m": 4}), (SphereFace, {"m": 2, "detach_margin": True}),
]


@pytest.mark.parametrize("cls,kwargs", HEADS)
@pytest.mark.parametrize("block", [None, 7])
def test_every_head_loss_is_fused_and_equals_unfused(cls, kwargs, block):
    """head.loss (the fused path) == head.unfused_loss, over several training steps."""
    fused_head = cls(6, 24, block_size=block, **kwargs).double()
    ref_head = cls(6, 24, **kwargs).double()
    ref_head.load_state_dict(fused_head.state_dict())
    if hasattr(fused_head, "bias"):
        with torch.no_grad():
            fused_head.bias.normal_()
            ref_head.bias.copy_(fused_head.bias)
    for step in range(3):  # SphereFace: lambda moves with the iteration counter
        x, _, y = _data(seed=step, hard=(step == 1))
        lf, lr = fused_head.loss(x, y), ref_head.unfused_loss(x, y)
        torch.testing.assert_close(lf, lr, rtol=1e-10, atol=1e-10)
        params_f = (x, *fused_head.parameters())
        params_r = (x, *ref_head.parameters())
        for gf, gr in zip(_grads(lf, params_f), _grads(lr, params_r), strict=True):
            torch.testing.assert_close(gf, gr, rtol=1e-10, atol=1e-10)
    if cls is SphereFace:
        assert int(fused_head.iteration) == 3


def test_head_loss_under_autocast_keeps_float32_products():
    head = ArcFace(16, 300)
    x, y = torch.randn(8, 16), torch.randint(0, 300, (8,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = head.loss(x, y)
    torch.testing.assert_close(inside, head.unfused_loss(x, y), rtol=1e-5, atol=1e-5)
