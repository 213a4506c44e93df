"""Changed non-target logits ``s * n(cos)`` in the block passes of the fused loss.

A head whose ``LogitSpec.negatives`` is set (CurricularFace's ``n(cos) = cos (t + cos)`` on the
hard negatives, Huang et al., CVPR 2020) gets its block logits through ``n`` in the forward
logsumexp pass and ``dn/dcos`` in the gradient pass. Both run as one elementwise pass per block,
``n`` traced into the generated kernels of ``marginface.heads.fused.kernels`` like the heads
without negatives (eager in float64 and on small blocks).

The logits ``s n(cos)`` have no bound the loss could use as a fixed shift (ArcFace's ``s``), so
the forward pass keeps a running maximum; to stay one pass per block it shifts each block by the
maximum of the blocks *before* it (an achieved logit, so the running sum is >= 1 and whatever
underflows is negligible) and gets the block's own maximum from the same pass. Only when a row
has no maximum yet (the first block) or the block's maximum exceeds the shift by more than
``log(finfo.max) / 2`` (its exp could overflow) is the block recomputed with the exact shift.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from marginface.heads.fused import kernels

__all__ = ["NegativeBlocks", "finish_lse"]


class NegativeBlocks:
    """``n`` with its per-row parameters, applied to whole (batch, block) blocks.

    ``fn(cos, *params) -> (n(cos), dn/dcos)`` with ``params`` of shape (batch, 1); ``scale`` is
    ``s`` (the products of the blocks are ``s * cos`` up to the column factor ``1/|w_j|``).
    """

    def __init__(self, fn: Callable[..., tuple[Tensor, Tensor]], params: tuple[Tensor, ...],
                 scale: float, dtype: torch.dtype) -> None:
        self.fn = fn
        self.params = tuple(p.detach().to(dtype).unsqueeze(1) for p in params)
        self.scale = scale
        # exp of at most this much, summed over a block, stays finite in ``dtype``
        self.headroom = math.log(torch.finfo(dtype).max) / 2.0

    def _cos(self, z: Tensor) -> Tensor:
        # Target entries arrive as -inf (or anything): clamped to a finite cosine, then
        # overwritten by the caller, so they never reach the sum or the gradient.
        return (z / self.scale).clamp_(-1.0, 1.0)

    def logits_(self, logits: Tensor) -> Tensor:
        """``s * cos`` -> ``s * n(cos)`` in place (the sub-centre blocks' forward pass)."""
        value, _ = self.fn(self._cos(logits), *self.params)
        return logits.copy_(value).mul_(self.scale)

    def accumulate(self, r: Tensor, col: Tensor, run_max: Tensor, total: Tensor) -> Tensor:
        """One block of the running logsumexp; returns the new running max (``total`` updated).

        ``r`` are the block's raw products ``s <x_hat, w_j>`` (target entries -inf), ``col``
        the block's ``1/|w_j|``; ``run_max`` and ``total`` (batch,) in the compute dtype.
        """
        known = torch.isfinite(run_max)
        shift = torch.where(known, run_max, torch.zeros_like(run_max))
        part, block_max = kernels.negatives_rowsum_max(
            self.fn, self.scale, r, col, (-shift).unsqueeze(1), self.params)
        redo = (~known & (block_max > -math.inf)) | (block_max > shift + self.headroom)
        if bool(redo.any()):  # the whole block again: the kernels keep one shape per block
            shift = torch.where(redo, block_max, shift)
            part, block_max = kernels.negatives_rowsum_max(
                self.fn, self.scale, r, col, (-shift).unsqueeze(1), self.params)
        new_max = torch.maximum(run_max, block_max)
        live = torch.isfinite(new_max)  # rows with a term so far; the others keep total = 0
        zero = torch.zeros_like(total)
        total.copy_(torch.where(live, total * torch.exp(run_max - new_max), zero)
                    + torch.where(live, part * torch.exp(shift - new_max), zero))
        return new_max

    def grad_block(self, r: Tensor, col: Tensor | None, bias: Tensor | None, neg_shift: Tensor,
                   out: Tensor) -> Tensor:
        """``out = exp(s n(cos) + neg_shift) * dn/dcos * col`` (``kernels.grad_block``'s contract).

        ``r`` are the raw products ``s * <x_hat, w_j>``, ``col = 1/|w_j|``: ``dz/dr = n' col``.
        Rounded once into ``out`` (bfloat16 in bfloat16 mode).
        """
        if col is None or bias is not None:
            raise ValueError("negatives need normalised class rows and no bias")
        return kernels.negatives_grad(self.fn, self.scale, r, col, neg_shift, self.params, out)


def finish_lse(run_max: Tensor, total: Tensor, tgt_logit: Tensor, owned: Tensor) -> Tensor:
    """``log(exp(run_max) total + exp(target))`` for the ``owned`` rows, without the target else."""
    lse = run_max + total.log()
    if owned.numel():
        m, t = run_max[owned], tgt_logit[owned]
        top = torch.maximum(m, t)
        lse[owned] = top + torch.log(total[owned] * torch.exp(m - top) + torch.exp(t - top))
    return lse
