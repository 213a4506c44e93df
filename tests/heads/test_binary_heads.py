"""SphereFace2 and UniFace: the fused binary loss, ``forward`` and ``unfused_loss`` equal
plain-torch restatements of the papers (float64 values and gradients of embeddings, weight and
bias, several blocks); gradcheck; finite at cos = +-1, large scales and under bf16/fp16
(hypothesis); the bias's start; paper defaults; bad parameters named."""

from __future__ import annotations

import math

import pytest
import torch
from binary_references import (
    sphereface2_loss,
    sphereface2_scores,
    uniface_loss,
    uniface_scores,
)
from heads_cases import (
    basis_weight,
    rotation_embeddings,
    single_thread,  # noqa: F401  (autouse fixture)
)
from hypothesis import given, settings
from hypothesis import strategies as st

from marginface.heads import SphereFace2, UniFace, fused_cross_entropy
from marginface.heads.sphereface2 import sphereface2_bias_init

D, C, B = 6, 7, 9  # block_size 2: four blocks of classes


def _data(seed: int, norm_scale: float = 2.0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, D, generator=gen, dtype=torch.float64) * norm_scale
    w = torch.randn(C, D, generator=gen, dtype=torch.float64)
    y = torch.randint(0, C, (B,), generator=gen)
    b = torch.randn(1, generator=gen, dtype=torch.float64)
    return x, w, y, b


HEADS = {
    "sphereface2_C": lambda **kw: SphereFace2(D, C, scale=8.0, margin=0.3, **kw),
    "sphereface2_A": lambda **kw: SphereFace2(D, C, scale=8.0, margin=0.4, margin_type="A",
                                              lambda_=0.6, t=2.0, **kw),
    "sphereface2_M": lambda **kw: SphereFace2(D, C, scale=8.0, margin=1.5, margin_type="M",
                                              t=2.5, **kw),
    "uniface_cos": lambda **kw: UniFace(D, C, scale=8.0, margin=0.3, **kw),
    "uniface_arc": lambda **kw: UniFace(D, C, scale=8.0, margin=0.5, margin_type="arc",
                                        lambda_=0.5, **kw),
}


def _head(name: str, w, b, **kw):
    head = HEADS[name](block_size=2, **kw).double()
    with torch.no_grad():
        head.weight.copy_(w)
        head.bias.copy_(b)
    return head


def _reference_loss(head, x, w, b, y):
    if isinstance(head, SphereFace2):
        return sphereface2_loss(x, w, b, y, r=head.scale, m=head.margin, lam=head.lambda_,
                                t=head.t, margin_type=head.margin_type)
    return uniface_loss(x, w, b, y, s=head.scale, m=head.margin, lam=head.lambda_,
                        margin_type=head.margin_type)


def _grads(loss, *inputs):
    return (loss, *torch.autograd.grad(loss, inputs))


@pytest.mark.parametrize("path", ["loss", "unfused_loss"])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("name", list(HEADS))
def test_equals_the_papers_restatement(name, train, path):
    for seed in (0, 1):
        x, w, y, b = _data(seed)
        head = _head(name, w, b).train(train)
        xr, wr, br = (t.clone().requires_grad_() for t in (x, w, b))
        ref = _grads(_reference_loss(head, xr, wr, br, y), xr, wr, br)
        xf = x.clone().requires_grad_()
        got = _grads(getattr(head, path)(xf, y), xf, head.weight, head.bias)
        for a, e in zip(got, ref, strict=True):
            torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(HEADS))
def test_forward_gives_the_restated_scores_margins_only_in_training(name):
    x, w, y, b = _data(2)
    head = _head(name, w, b)
    if isinstance(head, SphereFace2):
        pos, neg = sphereface2_scores(x, w, b, y, r=head.scale, m=head.margin, t=head.t,
                                      margin_type=head.margin_type)
        plain, _ = sphereface2_scores(x, w, b, y, r=head.scale, m=0.0, t=head.t,
                                      margin_type="C")
    else:
        pos, neg = uniface_scores(x, w, b, y, s=head.scale, m=head.margin,
                                  margin_type=head.margin_type)
        _, plain = uniface_scores(x, w, b, y, s=head.scale, m=0.0, margin_type="cos")
    onehot = torch.nn.functional.one_hot(y, C).bool()
    torch.testing.assert_close(head.train()(x, y), torch.where(onehot, pos, neg))
    torch.testing.assert_close(head.train()(x), plain)
    torch.testing.assert_close(head.eval()(x, y), plain)
    # the target_logit helper gives the training forward's target entries
    cos_y = (torch.nn.functional.normalize(x) @ torch.nn.functional.normalize(w).t()).gather(
        1, y[:, None]).squeeze(1)
    torch.testing.assert_close(head.target_logit(cos_y), pos[onehot])


@pytest.mark.parametrize("name", list(HEADS))
def test_gradcheck_of_the_fused_loss_embeddings_weight_and_bias(name):
    x, w, y, b = _data(6)
    head = _head(name, w, b)
    spec = head.logit_spec(None)
    sign = head.bias_sign
    xg, wg, bg = (t.clone().requires_grad_() for t in (x, w, b))
    assert torch.autograd.gradcheck(
        lambda e, v, c: fused_cross_entropy(e, v, y, spec, bias=sign * c, block_size=2),
        (xg, wg, bg))
    # and the head's own path (forward scores included) in training mode
    assert torch.autograd.gradcheck(lambda e: head.train()(e, y), (xg,))


@pytest.mark.parametrize("name", list(HEADS))
def test_fused_loss_is_blockwise_the_same_for_every_block_size(name):
    x, w, y, b = _data(4)
    losses = [_head(name, w, b).loss(x, y)]
    for block in (1, 3, 7, 64):
        head = _head(name, w, b)
        head.block_size = block
        losses.append(head.loss(x, y))
    for value in losses[1:]:
        torch.testing.assert_close(value, losses[0], rtol=1e-12, atol=1e-12)


PRECISIONS = {"float64": (torch.float64, None, torch.float32),
              "float32": (torch.float32, None, torch.float32),
              "bf16": (torch.float32, torch.bfloat16, torch.float32),
              "fp16": (torch.float32, torch.float16, torch.float32),
              "bf16_matmul": (torch.float32, torch.bfloat16, torch.bfloat16),
              "fp16_matmul": (torch.float32, torch.float16, torch.float16)}


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(list(HEADS)), precision=st.sampled_from(list(PRECISIONS)),
       angle=st.sampled_from([0.0, math.pi, math.pi / 2, 1e-9, math.pi - 1e-9, 0.3]),
       scale=st.floats(1.0, 256.0), norm=st.floats(1e-3, 1e3))
def test_finite_at_cos_pm1_large_scale_and_under_autocast(name, precision, angle, scale, norm):
    dtype, autocast, matmul = PRECISIONS[precision]
    head = HEADS[name](block_size=2, matmul_dtype=matmul).to(dtype).train()
    head.scale = scale
    with torch.no_grad():
        # C = D + 1 classes: unit basis rows and one zero row (cosine 0 by the clamp)
        head.weight.copy_(basis_weight(C, D + 1, dtype)[:, :D])
    theta = torch.tensor([angle, angle, 0.0, math.pi], dtype=dtype)
    leaf = rotation_embeddings(theta, D, norm=norm).requires_grad_()
    y = torch.tensor([0, 1, 0, 0])
    # the backbone hands over bf16/fp16 embeddings under autocast
    with torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
        scores = head(leaf.to(autocast or dtype), y)
        loss = head.loss(leaf.to(autocast or dtype), y)
    grads = torch.autograd.grad(loss, (leaf, head.weight, head.bias))
    assert torch.isfinite(loss) and torch.isfinite(scores).all()
    assert all(torch.isfinite(g).all() for g in grads)


@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from(list(HEADS)), scale=st.floats(16.0, 512.0),
       bias=st.floats(-200.0, 200.0), seed=st.integers(0, 10_000))
def test_fused_equals_restatement_at_large_scales_and_biases(name, scale, bias, seed):
    """softplus at |z| in the hundreds: the fused value and gradients stay exact (float64)."""
    x, w, y, _ = _data(seed)
    b = torch.tensor([bias], dtype=torch.float64)
    head = _head(name, w, b)
    head.scale = scale
    xr, wr, br = (t.clone().requires_grad_() for t in (x, w, b))
    ref = _grads(_reference_loss(head, xr, wr, br, y), xr, wr, br)
    xf = x.clone().requires_grad_()
    got = _grads(head.loss(xf, y), xf, head.weight, head.bias)
    for a, e in zip(got, ref, strict=True):
        assert torch.isfinite(a).all()
        # entries that cancel are compared to the size of the whole gradient
        size = max(1.0, float(e.detach().abs().max()))
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-10 * size)


@pytest.mark.parametrize("margin_type,margin", [("C", 0.4), ("A", 0.4), ("M", 1.5)])
@pytest.mark.parametrize("classes", [2, 100, 1_000_000])
def test_sphereface2_bias_starts_where_positive_and_negative_gradients_balance(margin_type,
                                                                               margin, classes):
    r, lam, t = 40.0, 0.7, 3.0
    b = sphereface2_bias_init(classes, scale=r, margin=margin, lambda_=lam, t=t,
                              margin_type=margin_type)
    # cos = 0 exactly: the scores a_y + b, a_n + b of the paper's functions at theta = pi/2
    g0 = 2.0 * 0.5**t - 1.0
    a_n = r * (g0 + margin) if margin_type == "C" else r * g0
    phi = {"C": None, "A": math.pi / 2 + margin, "M": margin * math.pi / 2}[margin_type]
    a_y = r * (g0 - margin) if phi is None else r * (2.0 * ((math.cos(phi) + 1) / 2)**t - 1.0)
    positive = lam * torch.sigmoid(torch.tensor(-(a_y + b), dtype=torch.float64))
    negative = (1 - lam) * (classes - 1) * torch.sigmoid(torch.tensor(a_n + b,
                                                                      dtype=torch.float64))
    torch.testing.assert_close(positive, negative, rtol=1e-9, atol=0.0)
    head = SphereFace2(4, classes, margin=margin, margin_type=margin_type) if classes < 1000 \
        else None
    if head is not None:
        assert float(head.bias.detach()) == pytest.approx(b, rel=1e-6)


def test_paper_defaults_and_bias_starts():
    sph = SphereFace2(D, C)
    assert (sph.scale, sph.margin, sph.lambda_, sph.t, sph.margin_type) == (
        40.0, 0.4, 0.7, 3.0, "C")
    assert sph.bias.shape == (1,) and sph.weight.shape == (C, D)
    uni = UniFace(D, C)
    assert (uni.scale, uni.margin, uni.margin_type, uni.lambda_, uni.r) == (
        64.0, 0.4, "cos", 1.0, 1.0)
    assert float(uni.bias.detach()) == pytest.approx(math.log(10 * C))
    assert float(UniFace(D, C, r=3.0).bias.detach()) == pytest.approx(math.log(30 * C))
    assert "bias" not in SphereFace2.class_tensors and "bias" not in UniFace.class_tensors
    uni.reset_parameters()
    assert float(uni.bias.detach()) == pytest.approx(math.log(10 * C))


@pytest.mark.parametrize("build, name, value", [
    (lambda v: SphereFace2(D, C, lambda_=v), "lambda_", 1.0),
    (lambda v: SphereFace2(D, C, lambda_=v), "lambda_", 0.0),
    (lambda v: SphereFace2(D, C, lambda_=v), "lambda_", 1.5),
    (lambda v: SphereFace2(D, C, t=v), "t", 0.5),
    (lambda v: SphereFace2(D, C, t=v), "t", -1.0),
    (lambda v: SphereFace2(D, C, scale=v), "scale", 0.0),
    (lambda v: SphereFace2(D, C, margin=v), "margin", -0.1),
    (lambda v: SphereFace2(D, C, margin=v, margin_type="A"), "margin", 4.0),
    (lambda v: SphereFace2(D, C, margin=v, margin_type="M"), "margin", 0.5),
    (lambda v: SphereFace2(D, C, margin_type=v), "margin_type", "B"),
    (lambda v: UniFace(D, C, lambda_=v), "lambda_", 0.0),
    (lambda v: UniFace(D, C, r=v), "r", -1.0),
    (lambda v: UniFace(D, C, margin=v), "margin", float("nan")),
    (lambda v: UniFace(D, C, margin=v, margin_type="arc"), "margin", 3.5),
    (lambda v: UniFace(D, C, margin_type=v), "margin_type", "sphere"),
    (lambda v: UniFace(D, v), "num_classes", 0),
])
def test_bad_parameters_are_named(build, name, value):
    with pytest.raises(ValueError, match=f"^{name} "):
        build(value)


def test_a_binary_head_refuses_a_per_class_bias_and_sub_centres():
    x, w, y, b = _data(0)
    head = _head("uniface_cos", w, b)
    with pytest.raises(ValueError, match="bias must be None for a binary head"):
        head.fused_loss(x, w, y, y, bias=torch.zeros(C, dtype=torch.float64))
    with pytest.raises(ValueError, match="one bias number"):
        fused_cross_entropy(x, w, y, head.logit_spec(None), bias=torch.zeros(C,
                                                                               dtype=x.dtype))
