"""CurricularFace (Huang et al., "CurricularFace: Adaptive Curriculum Learning Loss for Deep Face
Recognition", CVPR 2020).

Target ``s cos(theta_y + m)`` (ArcFace; past pi SphereFace's psi, as every head here). A negative
with ``cos theta_j > cos(theta_y + m)`` (a hard one) becomes ``s cos theta_j (t + cos theta_j)``,
the others stay ``s cos theta_j``. ``t`` is the moving average of the batch's mean target cosine,
``t <- 0.01 mean_i cos theta_{i,y_i} + 0.99 t`` (paper eq. 10 and the authors' code: momentum
0.01, ``t`` starts at 0, updated before the batch's logits use it), no gradient through ``t`` or
the hard-negative mask. The batch is the *global* one under DDP/sharding (``BatchStats``), so
every rank holds the same ``t``. Defaults s = 64, m = 0.5 (paper).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from marginface import functional as MF
from marginface.heads.fused import BatchStats, LogitSpec, RowFunction
from marginface.heads.margin import ArcFace
from marginface.heads.spec_logits import stateful_logits
from marginface.validation import check_in_range

__all__ = ["CurricularFace", "curricular_negatives"]


def curricular_negatives(cos: Tensor, threshold: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """``n(cos) = cos (t + cos)`` where ``cos > threshold``, else ``cos``; and ``dn/dcos``."""
    hard = cos > threshold
    return (torch.where(hard, cos * (t + cos), cos),
            torch.where(hard, t + 2.0 * cos, torch.ones_like(cos)))


class CurricularFace(ArcFace):
    """CurricularFace: ArcFace target, hard negatives ``cos (t + cos)``; buffer ``t`` (EMA).

    ``momentum`` (0.01) is the weight of the new batch in ``t``'s average, ``t`` its start value.
    """

    needs_target_cos = True
    t: Tensor

    def __init__(self, embedding_dim: int, num_classes: int, *, scale: float = 64.0,
                 margin: float = 0.5, momentum: float = 0.01, t: float = 0.0,
                 block_size: int | None = None,
                 matmul_dtype: torch.dtype = torch.float32) -> None:
        super().__init__(embedding_dim, num_classes, scale=scale, margin=margin,
                         block_size=block_size, matmul_dtype=matmul_dtype)
        self.momentum = check_in_range("momentum", momentum, 0.0, 1.0)
        t = check_in_range("t", t, -1.0, 1.0, "a mean cosine")
        self.register_buffer("t", torch.tensor(t))

    def update_state(self, stats: BatchStats) -> None:
        with torch.no_grad():
            mean = stats.target_cos.mean().to(self.t.dtype)
            self.t.mul_(1.0 - self.momentum).add_(self.momentum * mean)

    def logit_spec(self, stats: BatchStats | None = None) -> LogitSpec:
        cos_y = stats.target_cos
        threshold, _ = MF.margin_target_and_grad(cos_y, 1.0, self.m2)
        t = self.t.detach().to(cos_y.dtype).expand_as(cos_y)
        return dataclasses.replace(super().logit_spec(stats),
                                   negatives=RowFunction(curricular_negatives, (threshold, t)))

    def _logits(self, embeddings: Tensor, labels: Tensor | None) -> Tensor:
        return stateful_logits(self, embeddings, labels)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, momentum={self.momentum}"
