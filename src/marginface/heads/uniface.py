"""UniFace (Zhou, Jia, Li, Shen, Duan, "UniFace: Unified Cross-Entropy Loss for Deep Face
Recognition", ICCV 2023).

The unified cross-entropy (UCE) loss: one threshold ``b`` (learnable, the paper's b tilde) for
every sample-to-class pair, positive pairs pushed above it, negative ones below:

    L = log(1 + exp(-(s t(cos_y) - b))) + lambda * sum_{j != y} log(1 + exp(s cos_j - b))

with the margin ``t(cos) = cos - m`` (``margin_type="cos"``, the paper's main UniFace, CosFace's
margin) or ``cos(theta + m)`` (``"arc"``, ArcFace's; past pi SphereFace's psi as every head
here), and ``lambda`` the weight of the negative terms (the paper's re-weighting variant; 1 is
the plain UCE loss). Defaults s = 64, m = 0.4, lambda = 1 (paper). ``b`` starts at
``log(10 r C)`` with ``r = 1``, as in the authors' release (``r`` scales it: the paper's
bias-ratio variant). The authors' code clamps the scores to [-s, s] before the log; the loss here
is the formula itself, with its exact gradient.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from marginface.heads.binary import BinaryHead
from marginface.heads.fused import BatchStats, LogitSpec
from marginface.validation import (
    check_choice,
    check_in_range,
    check_non_negative,
    check_positive,
)

__all__ = ["UniFace"]

MARGIN_TYPES = ("cos", "arc")


class UniFace(BinaryHead):
    """UniFace: the UCE loss with a learnable threshold ``bias`` (the score is ``s cos - b``)."""

    bias_sign = -1.0

    def __init__(self, embedding_dim: int, num_classes: int, *, scale: float = 64.0,
                 margin: float = 0.4, margin_type: str = "cos", lambda_: float = 1.0,
                 r: float = 1.0, block_size: int | None = None,
                 matmul_dtype: torch.dtype = torch.float32) -> None:
        check_choice("margin_type", margin_type, MARGIN_TYPES)
        if margin_type == "cos":
            margin = check_non_negative("margin", margin)
        else:
            margin = check_in_range("margin", margin, 0.0, math.pi - 1e-9, "an angle in radians")
        self.margin, self.margin_type = float(margin), margin_type
        self.lambda_ = check_positive("lambda_", lambda_)
        self.r = check_positive("r", r)
        super().__init__(embedding_dim, num_classes, scale=scale,
                         bias_init=math.log(10.0 * self.r * num_classes) if isinstance(
                             num_classes, int) and num_classes > 0 else 0.0,
                         m2=self.margin if margin_type == "arc" else 0.0,
                         m3=self.margin if margin_type == "cos" else 0.0,
                         block_size=block_size, matmul_dtype=matmul_dtype)

    def plain_scores(self, cos: Tensor) -> Tensor:
        return self.scale * cos

    def logit_spec(self, stats: BatchStats | None = None) -> LogitSpec:
        return dataclasses.replace(super().logit_spec(stats), binary=True,
                                   neg_weight=self.lambda_)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, margin={self.margin}, margin_type={self.margin_type!r}, "
                f"lambda_={self.lambda_}, r={self.r}")
