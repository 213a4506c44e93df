"""The fused binary loss with generated (torch.compile) block kernels equals the eager one."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_fused_kernels import compiled, needs_compiler  # noqa: F401  (fixture)

from marginface.heads import SphereFace2, UniFace, fused_cross_entropy

D, C, B = 8, 40, 16


def _loss_and_grads(head, x, y, class_weights=None):
    xl = x.clone().requires_grad_()
    head.zero_grad()
    if class_weights is None:
        loss = head.loss(xl, y)
    else:
        spec = dataclasses.replace(head.logit_spec(None), class_weights=class_weights)
        loss = fused_cross_entropy(xl, head.weight, y, spec, bias=head.score_bias(),
                                   block_size=head.block_size, matmul_dtype=head.matmul_dtype)
    loss.backward()
    return [loss.detach(), xl.grad, head.weight.grad.clone(), head.bias.grad.clone()]


@needs_compiler
@pytest.mark.slow
@pytest.mark.parametrize("matmul_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("make", [lambda **kw: SphereFace2(D, C, **kw),
                                  lambda **kw: UniFace(D, C, scale=16.0, **kw)])
def test_compiled_binary_blocks_equal_eager(compiled, monkeypatch, make, matmul_dtype):  # noqa: F811
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(B, D, generator=gen) * 3.0
    y = torch.randint(0, C, (B,), generator=gen)
    head = make(block_size=16, matmul_dtype=matmul_dtype)
    with torch.no_grad():
        head.weight.normal_(generator=gen)
    weights = 1.0 + torch.rand(C, generator=gen)
    for class_weights in (None, weights):
        got = _loss_and_grads(head, x, y, class_weights)
        with monkeypatch.context() as m:
            m.setenv("MARGINFACE_COMPILE", "0")
            want = _loss_and_grads(head, x, y, class_weights)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
