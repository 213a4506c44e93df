"""Sub-center ArcFace (Deng et al., "Sub-center ArcFace: Boosting Face Recognition by Large-Scale
Noisy Web Faces", ECCV 2020).

Each class has K sub-centres (default K = 3, the paper's choice); ``cos theta_j`` is the maximum
over the class's sub-centres, ``max_k cos(x, W_{j,k})``, and the ArcFace margin goes on top:
target ``s cos(theta_y + m)`` (past pi psi), others ``s cos theta_j``, s = 64, m = 0.5. The
gradient of each class's cosine reaches only its nearest sub-centre.

``weight`` has shape ``(num_classes * K, embedding_dim)``, class-major: row ``j * K + k`` is
sub-centre k of class j (``weight.view(num_classes, K, D)``); the sharded classifier keeps a
class's K rows on one rank. The cleaning step of the paper (keep each class's dominant
sub-centre, drop the samples far from it) is ``marginface.heads.subcenter_clean``.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from marginface.heads.fused import BatchStats, LogitSpec
from marginface.heads.margin import ArcFace
from marginface.validation import check_positive_int

__all__ = ["SubCenterArcFace"]


class SubCenterArcFace(ArcFace):
    """ArcFace over the nearest of K sub-centres per class; ``weight`` is (C * K, D)."""

    def __init__(self, embedding_dim: int, num_classes: int, *, scale: float = 64.0,
                 margin: float = 0.5, sub_centers: int = 3, detach_margin: bool = False,
                 block_size: int | None = None,
                 matmul_dtype: torch.dtype = torch.float32) -> None:
        k = check_positive_int("sub_centers", sub_centers)
        super().__init__(embedding_dim, num_classes, scale=scale, margin=margin,
                         detach_margin=detach_margin, block_size=block_size,
                         matmul_dtype=matmul_dtype)
        self.sub_centers = self.rows_per_class = k
        self.weight = nn.Parameter(torch.empty(self.num_classes * k, self.embedding_dim))
        self.reset_parameters()

    def sub_center_cosines(self, embeddings: Tensor) -> Tensor:
        """``cos(x_i, W_{j,k})`` of every sub-centre, shape (batch, num_classes, K)."""
        cos = super().cosine(embeddings)
        return cos.view(cos.shape[0], self.num_classes, self.sub_centers)

    def cosine(self, embeddings: Tensor) -> Tensor:
        """``max_k cos(x_i, W_{j,k})`` (batch, num_classes); the gradient goes to the arg-max."""
        return self.sub_center_cosines(embeddings).max(2).values

    def logit_spec(self, stats: BatchStats | None = None) -> LogitSpec:
        return dataclasses.replace(super().logit_spec(stats), sub_centers=self.sub_centers)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, sub_centers={self.sub_centers}"
