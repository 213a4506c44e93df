"""The head interface: per-sample margins (with the radial term), changed negatives, moving state,
an extra loss; the fused loss equals plain-torch restatements in value and gradients."""

from __future__ import annotations

import pytest
import torch
from heads_cases import single_thread  # noqa: F401  (autouse fixture)
from hypothesis import given, settings
from hypothesis import strategies as st
from interface_heads import (
    CurricularLike,
    NormMarginArcFace,
    reference_curricular,
    reference_norm_margin,
)

from marginface.heads import LogitSpec, RowFunction, fused_cross_entropy
from marginface.heads.fused import batch_stats

D, C, B = 6, 7, 9  # block_size 2: four blocks of classes


def _data(seed: int):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, D, generator=gen, dtype=torch.float64) * 2.0
    w = torch.randn(C, D, generator=gen, dtype=torch.float64)
    y = torch.randint(0, C, (B,), generator=gen)
    return x, w, y


def _grads(loss, x, w):
    return (loss, *torch.autograd.grad(loss, (x, w)))


def _compare(head, reference, seed):
    x, w, y = _data(seed)
    with torch.no_grad():
        head.weight.copy_(w)
    xf = x.clone().requires_grad_()
    fused = _grads(head.loss(xf, y), xf, head.weight)
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    ref = _grads(reference(xr, wr, y), xr, wr)
    for a, b in zip(fused, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


NORM_HEADS = {
    "live_norm": dict(slope=0.05),
    "detached_norm": dict(slope=0.08, detach_norm=True),
    "live_norm_with_regulariser": dict(slope=0.05, reg=0.3),
}


@pytest.mark.parametrize("name", list(NORM_HEADS))
@pytest.mark.parametrize("seed", [0, 1])
def test_per_sample_margin_equals_unfused_restatement(name, seed):
    head = NormMarginArcFace(D, C, scale=4.0, margin=0.3, block_size=2,
                             **NORM_HEADS[name]).double()
    _compare(head, lambda x, w, y: reference_norm_margin(head, x, w, y), seed)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), slope=st.floats(0.0, 0.2), margin=st.floats(0.0, 0.6),
       scale=st.floats(1.0, 32.0), detach=st.booleans())
def test_per_sample_margin_hypothesis(seed, slope, margin, scale, detach):
    head = NormMarginArcFace(D, C, scale=scale, margin=margin, slope=slope, detach_norm=detach,
                             block_size=3).double()
    _compare(head, lambda x, w, y: reference_norm_margin(head, x, w, y), seed)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("seed", [0, 3])
def test_changed_negatives_and_moving_state_equal_unfused_restatement(training, seed):
    head = CurricularLike(D, C, scale=4.0, margin=0.2, t=0.4, block_size=2).double()
    head.train(training)
    x, w, _ = _data(seed)
    t_after = [float(head.t)]

    def reference(xr, wr, y):
        if training:  # the state moves first, from this batch's target cosines
            cos = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(
                w, dim=1).t()
            t_after[0] = 0.99 * t_after[0] + 0.01 * float(cos.gather(1, y[:, None]).mean())
        return reference_curricular(head, xr, wr, y, t_after[0])

    _compare(head, reference, seed)
    torch.testing.assert_close(float(head.t), t_after[0], rtol=1e-12, atol=1e-14)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), t=st.floats(0.0, 1.0), margin=st.floats(0.0, 0.6),
       scale=st.floats(1.0, 32.0), block=st.integers(1, 8))
def test_changed_negatives_hypothesis(seed, t, margin, scale, block):
    head = CurricularLike(D, C, scale=scale, margin=margin, t=t, block_size=block).double().eval()
    t_now = float(head.t)
    _compare(head, lambda x, w, y: reference_curricular(head, x, w, y, t_now), seed)


def _stats(head, x, w, y):
    return batch_stats(x, w, y, y, target_cos=head.needs_target_cos)


def _fixed_spec(head, x, w, y) -> LogitSpec:
    return head.logit_spec(_stats(head, x, w, y))


@pytest.mark.parametrize("head", [
    NormMarginArcFace(D, C, scale=4.0, margin=0.3, slope=0.1),
    NormMarginArcFace(D, C, scale=4.0, margin=0.3, slope=0.1, detach_norm=True),
    CurricularLike(D, C, scale=4.0, margin=0.2, t=0.4),
], ids=["live_norm", "detached_norm", "curricular"])
def test_gradcheck_of_the_fused_loss(head):
    x, w, y = _data(5)
    head = head.double().eval()
    spec = _fixed_spec(head, x, w, y)  # the per-sample parameters as constants
    x.requires_grad_()
    w.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b: fused_cross_entropy(a, b, y, spec, block_size=2), (x, w))


def _norm_shifted(cos, norm, p):
    """t = cos - 0.1 p |x|: a target that depends on the norm (dt/d|x| = -0.1 p)."""
    return cos - 0.1 * p * norm, torch.ones_like(cos), -0.1 * p


def test_gradcheck_of_a_norm_dependent_target_in_the_sphereface_kind():
    """z_iy = |x| t(cos, |x|): the radial term of the SphereFace kind, exact."""
    x, w, y = _data(6)
    spec = LogitSpec("sphereface", target_fn=RowFunction(_norm_shifted, (torch.rand(B).double(),)))
    x.requires_grad_()
    w.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b: fused_cross_entropy(a, b, y, spec, block_size=3), (x, w))


def test_negatives_in_low_precision_are_close_to_float32():
    x, w, y = _data(2)
    head = CurricularLike(D, C, scale=4.0, t=0.3, block_size=2).eval()
    with torch.no_grad():
        head.weight.copy_(w)
    full = head.loss(x.float(), y)
    head.matmul_dtype = torch.bfloat16
    torch.testing.assert_close(head.loss(x.float(), y), full, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("kind,sub_centers", [("sphereface", 1), ("softmax", 1), ("margin", 2)])
def test_binary_needs_the_margin_kind_and_one_row_per_class(kind, sub_centers):
    x, w, y = _data(0)
    spec = LogitSpec(kind, scale=4.0, binary=True, sub_centers=sub_centers)
    with pytest.raises(ValueError, match="binary losses need kind 'margin' and sub_centers=1"):
        fused_cross_entropy(x, w.repeat_interleave(sub_centers, 0), y, spec)
    with pytest.raises(ValueError, match="kind must be"):
        fused_cross_entropy(x, w, y, LogitSpec("arcface"))


def test_negatives_need_the_margin_kind():
    x, w, y = _data(0)
    head = CurricularLike(D, C).double()
    spec = LogitSpec("sphereface", negatives=_fixed_spec(head, x, w, y).negatives)
    with pytest.raises(ValueError, match="negatives need kind 'margin'"):
        fused_cross_entropy(x, w, y, spec)
