"""The seed's three Caffe loss heads composed from marginface.caffe.margin_layers vs modern maths.

Each head is built with the exact layer parameters of ../shared/caffe/seed/*.prototxt (checked
against the files by ``test_seed_prototxt_params``) and must give the loss and the gradients of
``marginface.functional.margin_logits`` + cross-entropy on the same weights. Caffe adds 1e-6
inside the square roots of Normalize and of the normalised InnerProduct; with embedding and weight
rows of norm >= 50 that moves cos(theta) by < 1e-9 relative, hence the tolerances.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from marginface.caffe.margin_layers import (
    CombinedMargin,
    CosinAddm,
    InnerProduct,
    LabelSpecificAdd,
    MarginInnerProduct,
    Normalize,
    Scale,
    SoftmaxWithLoss,
)
from marginface.functional import margin_logits

D = torch.float64
NUM_CLASSES, DIM, BATCH = 40, 16, 24

# (prototxt, margin layer, scale s, (m1, m2, m3), Normalize layer present in the snippet)
SEED_HEADS = {
    "cosface": ("cosface_head.prototxt", lambda: LabelSpecificAdd(bias=-0.35), 30.0,
                (1.0, 0.0, 0.35), True),
    "arcface": ("arcface_head.prototxt", lambda: CosinAddm(m=0.5), 64.0, (1.0, 0.5, 0.0), False),
    "combined": ("combined_margin_head.prototxt", lambda: CombinedMargin(m1=1, m2=0.3, m3=0.2),
                 30.0, (1.0, 0.3, 0.2), True),
}


class SeedHead(nn.Module):
    """[Normalize] -> InnerProduct(normalize, no bias) -> margin -> Scale(fixed s) -> loss."""

    def __init__(self, margin: nn.Module, s: float, with_normalize: bool) -> None:
        super().__init__()
        self.norm = Normalize() if with_normalize else None
        self.fc = InnerProduct(NUM_CLASSES, DIM, bias_term=False, normalize=True,
                               weight_filler={"type": "xavier"})
        self.margin = margin
        self.scale = Scale(filler={"type": "constant", "value": s}, learnable=False)
        self.loss = SoftmaxWithLoss()

    def forward(self, fc5: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        x = self.norm(fc5) if self.norm is not None else fc5
        return self.loss(self.scale(self.margin(self.fc(x), label)), label)


def _inputs(min_cos_y: float):
    """Weights with row norms in [50, 100] and embeddings near their class (cos_y > min_cos_y)."""
    g = torch.Generator().manual_seed(1)
    weight = F.normalize(torch.randn(NUM_CLASSES, DIM, generator=g, dtype=D), dim=1)
    weight = weight * (50 + 50 * torch.rand(NUM_CLASSES, 1, generator=g, dtype=D))
    label = torch.randint(0, NUM_CLASSES, (BATCH,), generator=g)
    emb = F.normalize(weight[label], dim=1) + 0.2 * torch.randn(BATCH, DIM, generator=g, dtype=D)
    emb = emb * 100
    cos_y = (F.normalize(emb, dim=1) * F.normalize(weight[label], dim=1)).sum(1)
    assert float(cos_y.min()) > min_cos_y, "test inputs violate the agreement region"
    assert float(cos_y.max()) < 0.999
    return emb, weight, label


@pytest.mark.parametrize("name", list(SEED_HEADS))
def test_seed_head_matches_modern_loss_and_gradients(name):
    _, make_margin, s, (m1, m2, m3), with_normalize = SEED_HEADS[name]
    # agreement region: CosFace needs cos_y > 0.35 (LabelSpecificAdd adds only there); the
    # angular ones need theta_y + m2 <= pi (Caffe's fallback / no extension past pi)
    emb, weight, label = _inputs(0.35 if name == "cosface" else math.cos(math.pi - m2))
    head = SeedHead(make_margin(), s, with_normalize).double().train()
    with torch.no_grad():
        head.fc.weight.copy_(weight)
    x = emb.clone().requires_grad_(True)
    fc5 = x if with_normalize else F.normalize(x, dim=1)  # the ArcFace snippet takes norm_fc5
    loss = head(fc5, label)
    loss.backward()

    w_ref = weight.clone().requires_grad_(True)
    x_ref = emb.clone().requires_grad_(True)
    logits = margin_logits(x_ref, w_ref, label, scale=s, m1=m1, m2=m2, m3=m3)
    ref = F.cross_entropy(logits, label)
    ref.backward()

    torch.testing.assert_close(loss, ref, rtol=1e-9, atol=0)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-7, atol=1e-12)
    torch.testing.assert_close(head.fc.weight.grad, w_ref.grad, rtol=1e-7, atol=1e-12)
    assert loss.item() > 0.0


def test_seed_cosface_differs_where_caffe_skips_the_margin():
    """Below cos_y = 0.35 Caffe's LabelSpecificAdd leaves the target alone; CosFace does not."""
    head = SeedHead(LabelSpecificAdd(bias=-0.35), 30.0, True).double().train()
    weight = torch.eye(NUM_CLASSES, DIM, dtype=D) * 5 + 0.0
    weight[DIM:] = torch.randn(NUM_CLASSES - DIM, DIM, dtype=D)
    with torch.no_grad():
        head.fc.weight.copy_(weight)
    emb = torch.zeros(1, DIM, dtype=D)
    emb[0, 0], emb[0, 1] = 0.2, 1.0  # cos with class 0 is about 0.196 < 0.35
    label = torch.tensor([0])
    caffe = head(emb, label)
    modern = F.cross_entropy(margin_logits(emb, weight, label, scale=30.0, m3=0.35), label)
    plain = F.cross_entropy(margin_logits(emb, weight, label, scale=30.0), label)
    assert caffe.item() == pytest.approx(float(plain), rel=1e-6)
    assert modern.item() > caffe.item() + 1.0


@pytest.mark.shared
def test_seed_prototxt_params(shared_dir):
    """The parameters hard-coded above are the ones in the seed's prototxt files."""
    seed = shared_dir / "caffe" / "seed"
    expected = {
        "cosface": [r"type: \"Normalize\"", r"bias: -0\.35", r"value: 30\b",
                    r"normalize: true", r"bias_term: false"],
        "arcface": [r"type: \"CosinAddm\"", r"m: 0\.5", r"value: 64\b", r"normalize: true"],
        "combined": [r"type: \"Normalize\"", r"m1: 1\b", r"m2: 0\.3", r"m3: 0\.2",
                     r"value: 30\b", r"normalize: true"],
    }
    for name, patterns in expected.items():
        text = (seed / SEED_HEADS[name][0]).read_text()
        for pattern in patterns:
            assert re.search(pattern, text), f"{name}: {pattern!r} not in the prototxt"
    assert "Normalize" not in (seed / "arcface_head.prototxt").read_text().split("layer", 1)[1]


def _heads_module():
    import marginface.heads as heads

    return heads


MODERN_HEADS = {  # seed head -> (marginface.heads class, keyword arguments)
    "cosface": ("CosFace", {"scale": 30.0, "margin": 0.35}),
    "arcface": ("ArcFace", {"scale": 64.0, "margin": 0.5}),
    "combined": ("CombinedMargin", {"scale": 30.0, "m1": 1.0, "m2": 0.3, "m3": 0.2}),
}


@pytest.mark.parametrize("name", list(SEED_HEADS))
def test_seed_head_matches_marginface_head_class(name):
    heads = _heads_module()
    _, make_margin, s, (_, m2, _), with_normalize = SEED_HEADS[name]
    emb, weight, label = _inputs(0.35 if name == "cosface" else math.cos(math.pi - m2))
    caffe = SeedHead(make_margin(), s, with_normalize).double().train()
    cls_name, kwargs = MODERN_HEADS[name]
    modern = getattr(heads, cls_name)(DIM, NUM_CLASSES, **kwargs).double().train()
    with torch.no_grad():
        caffe.fc.weight.copy_(weight)
        modern.weight.copy_(weight)
    x = emb.clone().requires_grad_(True)
    loss = caffe(x if with_normalize else F.normalize(x, dim=1), label)
    loss.backward()
    x_ref = emb.clone().requires_grad_(True)
    ref = modern.loss(x_ref, label)
    ref.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-9, atol=0)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-7, atol=1e-12)
    torch.testing.assert_close(caffe.fc.weight.grad, modern.weight.grad, rtol=1e-7, atol=1e-12)


def test_margin_inner_product_matches_sphereface_head_over_iterations():
    heads = _heads_module()
    g = torch.Generator().manual_seed(2)
    weight = torch.randn(NUM_CLASSES, DIM, generator=g, dtype=D)
    x = torch.randn(BATCH, DIM, generator=g, dtype=D) * 3
    label = torch.randint(0, NUM_CLASSES, (BATCH,), generator=g)
    caffe = MarginInnerProduct(NUM_CLASSES, DIM, type="QUADRUPLE", base=1000, gamma=0.12,
                               power=1, lambda_min=5).double().train()
    modern = heads.SphereFace(DIM, NUM_CLASSES, m=4, base=1000, gamma=0.12, power=1,
                              lambda_min=5).double().train()
    with torch.no_grad():
        caffe.weight.copy_(weight)
        modern.weight.copy_(weight)
    loss_layer = SoftmaxWithLoss()
    for _ in range(3):
        xa = x.clone().requires_grad_(True)
        xb = x.clone().requires_grad_(True)
        logits, _ = caffe(xa, label)
        loss_a = loss_layer(logits, label)
        loss_b = modern.loss(xb, label)
        torch.testing.assert_close(loss_a, loss_b, rtol=1e-10, atol=0)
        (ga,) = torch.autograd.grad(loss_a, xa)
        (gb,) = torch.autograd.grad(loss_b, xb)
        torch.testing.assert_close(ga, gb, rtol=1e-7, atol=1e-12)
    assert int(caffe.iteration) == int(modern.iteration) == 3
