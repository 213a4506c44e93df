"""Sub-center ArcFace (Deng et al., "Sub-center ArcFace: Boosting Face Recognition by Large-Scale
Noisy Web Faces", ECCV 2020).

Each class has K sub-centres (default K = 3, the paper's choice); ``cos theta_j`` is the maximum
over the class's sub-centres, ``max_k cos(x, W_{j,k})``, and the ArcFace margin goes on top:
target ``s cos(theta_y + m)`` (past pi psi), others ``s cos theta_j``, s = 64, m = 0.5. The
gradient of each class's cosine reaches only its nearest sub-centre.

``weight`` has shape ``(num_classes * K, embedding_dim)``, class-major: row ``j * K + k`` is
sub-centre k of class j (``weight.view(num_classes, K, D)``); the sharded classifier keeps a
class's K rows on one rank. The cleaning step of the paper (keep each class's dominant
sub-centre, list the samples far from it) is ``subcenter_cleaning`` here, and for a training run
``marginface subcenter-clean RUN_DIR -o outliers.txt`` (``marginface.train.subcenter_clean``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from marginface.heads.fused import BatchStats, LogitSpec
from marginface.heads.margin import ArcFace
from marginface.validation import check_positive_int

__all__ = ["SubCenterArcFace", "SubCenterCleaning", "subcenter_cleaning"]


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


@dataclass(frozen=True)
class SubCenterCleaning:
    """The paper's cleaning step on a labelled set of embeddings (sec. 3.2 of the paper).

    ``dominant`` (num_classes,): each class's dominant sub-centre, the one most of its samples
    are nearest to (ties: the lowest index; a class without samples: 0); ``angles`` (N,) in
    degrees from each sample to its class's dominant sub-centre; ``outliers`` the indices of the
    samples beyond ``threshold`` degrees; ``weight`` (num_classes, D) the dominant rows (the
    single-centre classifier the paper continues with).
    """

    dominant: Tensor
    angles: Tensor
    outliers: Tensor
    threshold: float
    weight: Tensor


@torch.no_grad()
def subcenter_cleaning(head: SubCenterArcFace, embeddings: Tensor, labels: Tensor,
                       threshold: float = 75.0) -> SubCenterCleaning:
    """Dominant sub-centres and the samples farther than ``threshold`` degrees (default 75)."""
    if not (isinstance(threshold, (int, float)) and 0.0 <= threshold <= 180.0):
        raise ValueError(f"threshold must be an angle in degrees in [0, 180], got {threshold!r}")
    k, classes = head.sub_centers, head.num_classes
    centres = F.normalize(head.weight.detach().double(), dim=1).view(classes, k, -1)
    unit = F.normalize(embeddings.detach().double(), dim=1)
    labels = labels.long()
    cos = torch.einsum("nd,nkd->nk", unit, centres[labels])  # (N, K): own class only
    votes = torch.bincount(labels * k + cos.argmax(1), minlength=classes * k)
    dominant = votes.view(classes, k).argmax(1)
    own = cos.gather(1, dominant[labels].unsqueeze(1)).squeeze(1).clamp(-1.0, 1.0)
    angles = torch.rad2deg(torch.acos(own))
    outliers = (angles > threshold).nonzero().squeeze(1)
    weight = head.weight.detach().view(classes, k, -1)[torch.arange(classes), dominant]
    return SubCenterCleaning(dominant, angles, outliers, float(threshold), weight.clone())
