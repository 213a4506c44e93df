"""Changed non-target logits ``s * n(cos)`` in the block passes of the fused loss (slow path).

A head whose ``LogitSpec.negatives`` is set (CurricularFace's ``n(cos) = cos (t + cos)`` on the
hard negatives, Huang et al., CVPR 2020) gets its block logits through ``n`` in the forward
logsumexp pass and ``dn/dcos`` in the gradient pass. This runs eagerly in the compute dtype,
one extra elementwise pass per block; heads without ``negatives`` never reach this module and keep
the compiled kernels of ``marginface.heads.fused.kernels``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["NegativeBlocks"]


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

    def _cos(self, z: Tensor) -> Tensor:
        # Target entries arrive as -inf (or anything): clamped to a finite cosine, then
        # overwritten by the caller, so they never reach the sum or the gradient.
        return (z / self.scale).clamp_(-1.0, 1.0)

    def logits_(self, logits: Tensor) -> Tensor:
        """``s * cos`` -> ``s * n(cos)`` in place (forward pass)."""
        value, _ = self.fn(self._cos(logits), *self.params)
        return logits.copy_(value).mul_(self.scale)

    def grad_block(self, r: Tensor, col: Tensor | None, bias: Tensor | None, neg_shift: Tensor,
                   out: Tensor) -> Tensor:
        """``out = exp(s n(cos) + neg_shift) * dn/dcos * col`` (``kernels.grad_block``'s contract).

        ``r`` are the raw products ``s * <x_hat, w_j>``, ``col = 1/|w_j|``: ``dz/dr = n' col``.
        """
        if col is None or bias is not None:
            raise ValueError("negatives need normalised class rows and no bias")
        cos = self._cos(r.to(out.dtype) * col)
        value, grad = self.fn(cos, *self.params)
        torch.exp(value * self.scale + neg_shift, out=out)
        return out.mul_(grad).mul_(col)
