"""gradcheck (float64) of every head, with respect to embeddings and every parameter."""

from __future__ import annotations

import pytest
import torch
from heads_cases import (
    HEAD_FACTORIES,
    MARGIN_KINDS,
    make_head,
    single_thread,  # noqa: F401  (autouse fixture)
)
from torch import nn
from torch.func import functional_call

from marginface import functional as MF
from marginface.heads import SphereFace


class _LossOf(nn.Module):
    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, embeddings, labels):
        return self.head.loss(embeddings, labels)


def _gradcheck(module: nn.Module, embeddings: torch.Tensor, labels: torch.Tensor, before=None):
    names = [n for n, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in module.named_parameters()]

    def fn(e, *ps):
        if before is not None:
            before()
        return functional_call(module, dict(zip(names, ps, strict=True)), (e, labels))

    emb = embeddings.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(fn, (emb, *params))


LABELS = torch.tensor([0, 1, 2, 3, 4, 0, 2])


# AdaFace's margin follows the *detached* norm (the paper's choice): its gradient is not the
# derivative of its value, so it is gradchecked with the spec held (tests/heads/test_modern_heads).
@pytest.mark.parametrize("name", [n for n in HEAD_FACTORIES if n != "adaface"])
def test_gradcheck_train_forward_eval_forward_and_loss(name):
    # CurricularFace's moving t carries no gradient by design (the paper's no_grad): held still
    # here (momentum 0), so the training step is differentiable.
    head = make_head(name, **({"momentum": 0.0} if name == "curricularface" else {}))
    emb = torch.randn(7, 6, dtype=torch.float64)
    if isinstance(head, SphereFace):
        head.iteration.fill_(100)
    # Buffers (SphereFace's iteration, moving state, a generator) back to the same values
    # before every call: gradcheck differentiates one step of state.
    saved = [b.clone() for b in head.buffers()]

    def reset():
        for buffer, value in zip(head.buffers(), saved, strict=True):
            buffer.copy_(value)

    head.train()
    _gradcheck(head, emb, LABELS, before=reset)
    _gradcheck(_LossOf(head), emb, LABELS, before=reset)
    head.eval()
    _gradcheck(head, emb, LABELS)
    _gradcheck(_LossOf(head), emb, LABELS)


@pytest.mark.parametrize("m", [1, 2, 3, 4])
@pytest.mark.parametrize("iteration", [0, 50, 5000])
def test_gradcheck_sphereface_at_several_iterations(m, iteration):
    head = make_head("sphereface", m=m, iteration=iteration).eval()  # eval: loss, no increment
    emb = 3.0 * torch.randn(7, 6, dtype=torch.float64)
    _gradcheck(_LossOf(head), emb, LABELS)
    assert int(head.iteration) == iteration


@pytest.mark.parametrize("name", MARGIN_KINDS + ["sphereface"])
def test_detach_margin_value_is_exact_and_gradient_is_straight_through(name):
    """Straight-through is by design not the derivative of its value, so gradcheck cannot apply;
    instead: same logits as the exact head, and the gradient of the plain logits plus a constant
    (the plain-logit gradients are gradchecked above)."""
    exact = make_head(name).train()
    straight = make_head(name, detach_margin=True).train()
    straight.load_state_dict(exact.state_dict())
    emb = torch.randn(7, 6, dtype=torch.float64, requires_grad=True)
    out_exact = exact(emb, LABELS)
    out_straight = straight(emb, LABELS)
    torch.testing.assert_close(out_straight, out_exact)

    weight = straight.weight
    cos = MF.cosine_similarity_matrix(emb, weight)
    cos = cos.view(7, -1, straight.rows_per_class).max(2).values  # sub-centres: the nearest
    if isinstance(straight, SphereFace):
        norms = emb.norm(dim=1, keepdim=True)
        reference = norms * (cos + (out_straight / norms - cos).detach())
    else:
        reference = straight.scale * cos + (out_straight - straight.scale * cos).detach()
    probe = torch.randn_like(out_straight)
    g_straight = torch.autograd.grad((out_straight * probe).sum(), (emb, weight))
    g_ref = torch.autograd.grad((reference * probe).sum(), (emb, weight))
    for a, b in zip(g_straight, g_ref, strict=True):
        torch.testing.assert_close(a, b)
    g_exact = torch.autograd.grad((out_exact * probe).sum(), (emb,))[0]
    if name != "cosface" and name != "normface":  # additive margins: the two gradients coincide
        assert not torch.allclose(g_exact, g_straight[0])
