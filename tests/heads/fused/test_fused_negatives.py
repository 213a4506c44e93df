"""Changed negatives (CurricularFace's ``cos (t + cos)``) in the fused loss's one-pass blocks.

The forward pass shifts each block by the running maximum of the blocks before it and recomputes a
block only when a row has no maximum yet or the block's maximum would overflow the exp; these
tests hold the value and the gradients to an unfused float64 restatement, on every branch.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from heads_cases import single_thread  # noqa: F401  (autouse fixture)

from marginface.heads import LogitSpec, RowFunction, fused_cross_entropy
from marginface.heads.curricular import curricular_negatives
from marginface.heads.fused import kernels

D, C, B = 5, 11, 7


def _data(seed: int, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, D, generator=gen, dtype=dtype) * 2.0
    w = torch.randn(C, D, generator=gen, dtype=dtype)
    y = torch.randint(0, C, (B,), generator=gen)
    threshold = torch.rand(B, generator=gen, dtype=dtype) - 0.5
    t = torch.rand(B, generator=gen, dtype=dtype) - 0.2
    return x, w, y, threshold, t


def _spec(scale: float, threshold, t) -> LogitSpec:
    return LogitSpec("margin", scale=scale, m2=0.4,
                     negatives=RowFunction(curricular_negatives, (threshold, t)))


def _reference(x, w, y, scale, threshold, t):
    """The paper's logits in full: ``s cos(theta_y + m)``, hard negatives ``s cos (t + cos)``."""
    cos = F.normalize(x, dim=1) @ F.normalize(w, dim=1).t()
    cos_y = cos.gather(1, y[:, None]).squeeze(1)
    target = torch.cos(torch.acos(cos_y) + 0.4)  # theta_y + m < pi for these draws
    assert bool((torch.acos(cos_y) + 0.4 < math.pi).all())
    th, tt = threshold[:, None], t[:, None]
    others = torch.where(cos > th, cos * (tt + cos), cos)
    return F.cross_entropy(scale * others.scatter(1, y[:, None], target[:, None]), y)


def _both(x, w, y, scale, threshold, t, block):
    xf, wf = x.clone().requires_grad_(), w.clone().requires_grad_()
    fused = fused_cross_entropy(xf, wf, y, _spec(scale, threshold, t), block_size=block)
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    ref = _reference(xr, wr, y, scale, threshold, t)
    return ((fused, *torch.autograd.grad(fused, (xf, wf))),
            (ref, *torch.autograd.grad(ref, (xr, wr))))


@pytest.mark.parametrize("block", [1, 3, 4, None])
@pytest.mark.parametrize("seed", [0, 1])
def test_one_pass_blocks_equal_unfused_restatement(block, seed):
    x, w, y, threshold, t = _data(seed)
    got, want = _both(x, w, y, 16.0, threshold, t, block)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def _far_apart_blocks(dtype):
    """Samples near one direction e; block 0 (classes 0-3) near -e, blocks 1 and 2 near e.

    Hard negatives above cos = 0 only: block 0's logits are about -s, block 1's about s (1 + t).
    """
    gen = torch.Generator().manual_seed(2)
    e = F.normalize(torch.randn(1, D, generator=gen, dtype=dtype), dim=1)
    x = 3.0 * e + 0.1 * torch.randn(B, D, generator=gen, dtype=dtype)
    w = torch.cat([-e.expand(4, D), e.expand(7, D)]) + 0.1 * torch.randn(C, D, generator=gen,
                                                                           dtype=dtype)
    y = torch.tensor([8, 9, 10, 8, 9, 10, 8])  # targets in the last block
    return x, w, y, torch.zeros(B, dtype=dtype), torch.rand(B, generator=gen, dtype=dtype)


@pytest.mark.parametrize("dtype,scale,tol", [(torch.float64, 500.0, 1e-10),
                                             (torch.float32, 60.0, 2e-5)])
def test_block_max_far_above_the_shift_recomputes_the_block(monkeypatch, dtype, scale, tol):
    calls = []
    real = kernels.negatives_rowsum_max

    def counted(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(kernels, "negatives_rowsum_max", counted)
    x, w, y, threshold, t = _far_apart_blocks(dtype)
    headroom = math.log(torch.finfo(dtype).max) / 2
    assert 1.8 * scale > headroom  # block 1's max lies past the exp's headroom over block 0's
    got, want = _both(x, w, y, scale, threshold, t, block=4)
    assert len(calls) == 3 + 2  # three blocks, the first and the second twice
    for a, b in zip(got, want, strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b.to(dtype), rtol=tol,
                                   atol=tol * float(b.detach().abs().max()))


def test_gradcheck_of_the_changed_negatives():
    x, w, y, threshold, t = _data(4)
    spec = _spec(4.0, threshold, t)
    x.requires_grad_()
    w.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b: fused_cross_entropy(a, b, y, spec, block_size=3), (x, w))


def test_low_precision_gradients_are_rounded_once(monkeypatch):
    """bfloat16 mode writes the negatives' gradient straight into the bfloat16 block."""
    x, w, y, threshold, t = _data(5, torch.float32)
    spec = _spec(16.0, threshold, t)
    grads = {}
    for dtype in (torch.float32, torch.bfloat16):
        xf, wf = x.clone().requires_grad_(), w.clone().requires_grad_()
        loss = fused_cross_entropy(xf, wf, y, spec, block_size=4, matmul_dtype=dtype)
        grads[dtype] = (loss, *torch.autograd.grad(loss, (xf, wf)))
    for a, b in zip(grads[torch.bfloat16], grads[torch.float32], strict=True):
        torch.testing.assert_close(a, b, rtol=3e-2, atol=3e-2 * float(b.abs().max()))
