"""No (batch, num_classes) tensor is ever allocated by the fused loss (forward and backward).

A TorchDispatchMode sees every aten op below autograd, custom functions included, and records
the size of the storage behind each output. With batch > dim, a (batch, classes) tensor is
bigger than anything the fused path may hold (the weight, its gradient, (batch, block) work).
The same tracer run over the unfused path must see the big tensor, so the check can fail.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from marginface import functional as MF
from marginface.heads.fused import (
    fused_margin_cross_entropy,
    fused_softmax_cross_entropy,
    fused_sphereface_cross_entropy,
)

BATCH, DIM, CLASSES, BLOCK = 64, 8, 4096, 256


class LargestStorage(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.largest = 0
        self.op = None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                n = t.untyped_storage().nbytes() // t.element_size()
                if n > self.largest:
                    self.largest, self.op = n, str(func)
        return out


def _run(loss_fn):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, DIM, generator=gen, requires_grad=True)
    w = torch.randn(CLASSES, DIM, generator=gen, requires_grad=True)
    b = torch.zeros(CLASSES, requires_grad=True)
    y = torch.randint(0, CLASSES, (BATCH,), generator=gen)
    mode = LargestStorage()
    with mode:
        loss_fn(x, w, b, y).backward()
    return mode


def test_fused_paths_never_hold_batch_by_classes():
    limit = max(CLASSES * DIM, BATCH * BLOCK)
    assert BATCH * CLASSES > 4 * limit
    for fn in (
        lambda x, w, b, y: fused_margin_cross_entropy(x, w, y, scale=64.0, m2=0.5,
                                                      block_size=BLOCK),
        lambda x, w, b, y: fused_margin_cross_entropy(x, w, y, scale=64.0, m2=0.5,
                                                      block_size=BLOCK,
                                                      matmul_dtype=torch.bfloat16),
        lambda x, w, b, y: fused_sphereface_cross_entropy(x, w, y, m=4, lambda_=5.0,
                                                          block_size=BLOCK),
        lambda x, w, b, y: fused_softmax_cross_entropy(x, w, b, y, block_size=BLOCK),
    ):
        mode = _run(fn)
        assert mode.largest <= limit, (mode.largest, mode.op)


def test_tracer_sees_the_unfused_logits():
    mode = _run(lambda x, w, b, y: F.cross_entropy(
        MF.margin_logits(x, w, y, scale=64.0, m2=0.5), y))
    assert mode.largest >= BATCH * CLASSES
