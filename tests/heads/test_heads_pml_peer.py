"""Agreement with an independent implementation: pytorch-metric-learning's ArcFaceLoss,
CosFaceLoss and SphereFaceLoss, where the semantics coincide.

Differences (documented in docs/heads.md):
- PML's weight ``W`` is (embedding_dim, num_classes): it gets ``head.weight.T``.
- ArcFaceLoss's margin is in degrees (default 28.6 = 0.4992 rad, not 0.5); past theta + m = pi it
  uses the Caffe/MXNet fallback cos(theta) - m sin(m), ours psi(theta + m).
- SphereFaceLoss is A-Softmax without the lambda annealing (our base = lambda_min = 0 gives
  lambda = 0) and multiplies by its ``scale`` (default 1) as well as |x|.
- All three reduce by the mean over the batch, like ``head.loss``.
"""

from __future__ import annotations

import math

import pytest
import pytorch_metric_learning.losses as pml_losses  # noqa: E402  (dev extra: the peer is required)
import torch
from heads_cases import single_thread  # noqa: F401  (autouse fixture)

from marginface.heads import ArcFace, CosFace, SphereFace  # noqa: E402

D, C, B = 12, 7, 24


def _pair(head, pml_loss, embeddings, labels):
    head = head.double().train()
    pml_loss = pml_loss.double()
    with torch.no_grad():
        head.weight.normal_()
        pml_loss.W.copy_(head.weight.T)
    e1 = embeddings.clone().requires_grad_()
    e2 = embeddings.clone().requires_grad_()
    ours = head.loss(e1, labels)
    theirs = pml_loss(e2, labels)
    ours.backward()
    theirs.backward()
    return ours, theirs, (e1.grad, head.weight.grad), (e2.grad, pml_loss.W.grad.T)


def _assert_agree(ours, theirs, g_ours, g_theirs):
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
    for a, b in zip(g_ours, g_theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_pml_defaults_are_as_documented():
    arc = pml_losses.ArcFaceLoss(C, D)
    assert arc.scale == 64 and arc.margin == pytest.approx(math.radians(28.6))
    assert ArcFace(D, C).margin == 0.5  # the paper's 0.5 rad; PML's default is 0.4992 rad
    cos = pml_losses.CosFaceLoss(C, D)
    assert (cos.scale, cos.margin) == (64, 0.35) == (CosFace(D, C).scale, CosFace(D, C).margin)
    sph = pml_losses.SphereFaceLoss(C, D)
    assert (sph.scale, sph.margin) == (1, 4)
    assert arc.W.shape == (D, C)


@pytest.mark.parametrize("margin", [0.35, 0.1])
def test_cosface_matches_pml_cosface_loss(margin):
    emb, labels = torch.randn(B, D, dtype=torch.float64), torch.randint(0, C, (B,))
    ours, theirs, g1, g2 = _pair(
        CosFace(D, C, scale=30.0, margin=margin),
        pml_losses.CosFaceLoss(C, D, margin=margin, scale=30.0), emb, labels,
    )
    _assert_agree(ours, theirs, g1, g2)


@pytest.mark.parametrize("margin", [0.5, 0.3])
def test_arcface_matches_pml_arcface_loss_with_margin_in_degrees(margin):
    emb, labels = torch.randn(B, D, dtype=torch.float64), torch.randint(0, C, (B,))
    head = ArcFace(D, C, scale=16.0, margin=margin)
    peer = pml_losses.ArcFaceLoss(C, D, margin=math.degrees(margin), scale=16.0)
    ours, theirs, g1, g2 = _pair(head, peer, emb, labels)
    with torch.no_grad():  # the comparison is only meaningful where theta_y + m <= pi
        cos = torch.nn.functional.normalize(emb, dim=1) @ torch.nn.functional.normalize(
            head.weight, dim=1).T
        assert bool((torch.acos(cos[torch.arange(B), labels]) + margin < math.pi).all())
    _assert_agree(ours, theirs, g1, g2)


def test_arcface_differs_from_pml_only_past_pi_by_the_documented_fallback():
    margin, scale = 0.5, 4.0
    theta = torch.tensor([math.pi - 0.2], dtype=torch.float64)  # theta + m > pi
    emb = torch.zeros(1, D, dtype=torch.float64)
    emb[0, 0], emb[0, D - 1] = torch.cos(theta), torch.sin(theta)  # D-1: no class row
    labels = torch.tensor([0])
    head = ArcFace(D, C, scale=scale, margin=margin).double().train()
    peer = pml_losses.ArcFaceLoss(C, D, margin=math.degrees(margin), scale=scale).double()
    with torch.no_grad():
        head.weight.copy_(torch.eye(C, D, dtype=torch.float64))
        peer.W.copy_(head.weight.T)
    ours = head(emb, labels)[0, 0].detach() / scale
    c = math.cos(theta.item())
    assert float(ours) == pytest.approx(-math.cos(theta.item() + margin) - 2.0)  # psi, k = 1
    # PML: cos(theta) - m sin(m); recover its target logit from the loss (others are 0 logits)
    loss = float(peer(emb, labels))
    target = -math.log(math.expm1(loss) / (C - 1)) / scale
    assert target == pytest.approx(c - margin * math.sin(margin))
    assert float(ours) != pytest.approx(target)


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_sphereface_matches_pml_sphereface_loss_at_lambda_zero(m):
    emb = 2.0 * torch.randn(B, D, dtype=torch.float64)
    labels = torch.randint(0, C, (B,))
    head = SphereFace(D, C, m=m, base=0.0, lambda_min=0.0)
    assert head.current_lambda() == 0.0
    ours, theirs, g1, g2 = _pair(head, pml_losses.SphereFaceLoss(C, D, margin=m), emb, labels)
    _assert_agree(ours, theirs, g1, g2)
