"""The shared margin maths: values, exact gradients, the monotone extension, finiteness."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from marginface import functional as MF

MARGIN_SETS = [
    (1.0, 0.0, 0.0),
    (1.0, 0.0, 0.35),
    (1.0, 0.5, 0.0),
    (1.0, 0.3, 0.2),
    (1.35, 0.0, 0.0),
    (1.5, 0.2, 0.1),
    (4.0, 0.0, 0.0),
    (0.7, 3.0, 0.1),
]


def test_psi_matches_cos_on_zero_to_pi_and_sphereface_beyond():
    phi = torch.linspace(0, math.pi, 101, dtype=torch.float64)
    torch.testing.assert_close(MF.psi(phi), torch.cos(phi))
    # k = 1 branch: -cos(phi) - 2
    phi2 = torch.tensor([1.5 * math.pi], dtype=torch.float64)
    torch.testing.assert_close(MF.psi(phi2), -torch.cos(phi2) - 2.0)


@pytest.mark.parametrize("m1,m2,m3", MARGIN_SETS)
def test_target_value_formula_inside_zero_pi(m1, m2, m3):
    theta = torch.linspace(0.01, (math.pi - m2) / m1 - 0.01, 50, dtype=torch.float64)
    theta = theta[theta < math.pi]
    value = MF.margin_target(torch.cos(theta), m1, m2, m3)
    torch.testing.assert_close(value, torch.cos(m1 * theta + m2) - m3)


@pytest.mark.parametrize("m1,m2,m3", MARGIN_SETS)
def test_target_gradcheck(m1, m2, m3):
    cos = (torch.rand(24, dtype=torch.float64) * 1.9 - 0.95).requires_grad_()
    assert torch.autograd.gradcheck(lambda c: MF.margin_target(c, m1, m2, m3), (cos,))


@pytest.mark.parametrize("m1,m2,m3", MARGIN_SETS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_target_finite_at_cos_plus_minus_one(m1, m2, m3, dtype):
    cos = torch.tensor([-1.0, 1.0], dtype=dtype, requires_grad=True)
    value = MF.margin_target(cos, m1, m2, m3)
    value.sum().backward()
    assert torch.isfinite(value).all() and torch.isfinite(cos.grad).all()


def test_additive_margin_gradient_is_one_everywhere():
    cos = torch.tensor([-1.0, -0.3, 0.0, 0.9, 1.0], dtype=torch.float64, requires_grad=True)
    MF.margin_target(cos, 1.0, 0.0, 0.35).sum().backward()
    torch.testing.assert_close(cos.grad, torch.ones_like(cos))


def test_detach_margin_keeps_value_and_passes_gradient_straight_through():
    cos = torch.tensor([-0.5, 0.2, 0.8], dtype=torch.float64, requires_grad=True)
    exact = MF.margin_target(cos, 1.0, 0.5, 0.0)
    straight = MF.margin_target(cos, 1.0, 0.5, 0.0, detach_margin=True)
    torch.testing.assert_close(exact, straight)
    straight.sum().backward()
    torch.testing.assert_close(cos.grad, torch.ones_like(cos))


@settings(max_examples=60, deadline=None)
@given(
    m1=st.floats(0.2, 4.0),
    m2=st.floats(0.0, math.pi - 1e-3),
    m3=st.floats(0.0, 1.0),
)
def test_target_monotone_and_finite_over_parameter_space(m1, m2, m3):
    theta = torch.linspace(0, math.pi, 2001, dtype=torch.float64)
    cos = torch.cos(theta).requires_grad_()
    value = MF.margin_target(cos, m1, m2, m3)
    value.sum().backward()
    assert torch.isfinite(value).all() and torch.isfinite(cos.grad).all()
    assert bool((value[1:] - value[:-1] <= 1e-12).all()), "target logit must not rise with theta"
    # derivative in cos is >= 0 exactly because the logit falls with theta
    assert bool((cos.grad >= -1e-9).all())


def test_margin_logits_gradcheck_and_sphereface_gradcheck():
    emb = torch.randn(6, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(5, 8, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    assert torch.autograd.gradcheck(
        lambda e, w: MF.combined_margin_logits(e, w, labels, scale=8.0), (emb, weight)
    )
    assert torch.autograd.gradcheck(
        lambda e, w: MF.sphereface_logits(e, w, labels, m=4, lambda_=5.0), (emb, weight)
    )


def test_margin_logits_only_change_target_entries():
    emb, weight = torch.randn(4, 8), torch.randn(6, 8)
    labels = torch.tensor([5, 0, 2, 2])
    plain = MF.margin_logits(emb, weight, None, scale=10.0)
    margin = MF.arcface_logits(emb, weight, labels, scale=10.0, margin=0.5)
    mask = torch.zeros_like(plain, dtype=torch.bool)
    mask[torch.arange(4), labels] = True
    torch.testing.assert_close(plain[~mask], margin[~mask])
    assert bool((margin[mask] < plain[mask]).all())


def test_sphereface_lambda_schedule():
    assert MF.sphereface_lambda(0) == 1000.0
    assert MF.sphereface_lambda(10) == pytest.approx(1000.0 / 2.2)
    assert MF.sphereface_lambda(10**6) == 5.0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(m1=0.0), "m1"),
        (dict(m2=-0.1), "m2"),
        (dict(m2=math.pi), "m2"),
        (dict(m3=-0.2), "m3"),
        (dict(scale=0.0), "scale"),
    ],
)
def test_bad_parameters_name_the_argument(kwargs, match):
    emb, weight, labels = torch.randn(2, 4), torch.randn(3, 4), torch.tensor([0, 1])
    params = dict(scale=10.0) | kwargs
    with pytest.raises(ValueError, match=match):
        MF.margin_logits(emb, weight, labels, **params)


def test_bad_inputs_name_the_argument_and_value():
    weight = torch.randn(3, 4)
    with pytest.raises(ValueError, match=r"labels\[1\] = 3"):
        MF.margin_logits(torch.randn(2, 4), weight, torch.tensor([0, 3]), scale=1.0)
    with pytest.raises(ValueError, match="integer"):
        MF.margin_logits(torch.randn(2, 4), weight, torch.tensor([0.0, 1.0]), scale=1.0)
    with pytest.raises(ValueError, match=r"\(batch, 4\)"):
        MF.margin_logits(torch.randn(2, 5), weight, torch.tensor([0, 1]), scale=1.0)
    bad = torch.randn(3, 4)
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="row 2"):
        MF.margin_logits(bad, weight, torch.tensor([0, 1, 2]), scale=1.0)
    with pytest.raises(ValueError, match="2 rows"):
        MF.margin_logits(torch.randn(2, 4), weight, torch.tensor([0, 1, 2]), scale=1.0)


@settings(max_examples=50, deadline=None)
@given(cos=st.floats(-1.0, 1.0), psi=st.floats(-7.0, 1.0), lam=st.floats(0.0, 1e4))
def test_sphereface_target_blends_cos_and_psi(cos, psi, lam):
    c, p = torch.tensor([cos], dtype=torch.float64), torch.tensor([psi], dtype=torch.float64)
    value = MF.sphereface_target(c, p, lam)
    torch.testing.assert_close(value, (lam * c + p) / (1.0 + lam))
    assert float(MF.sphereface_target(c, p, 0.0)) == psi  # lambda 0: plain A-Softmax
    # a convex combination: between cos and psi
    assert min(cos, psi) - 1e-12 <= float(value) <= max(cos, psi) + 1e-12
