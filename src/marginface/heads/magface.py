"""MagFace (Meng et al., "MagFace: A Universal Representation for Face Recognition and Quality
Assessment", CVPR 2021).

The feature magnitude ``a = |x|``, clamped to ``[l_a, u_a]``, sets the margin
``m(a) = l_m + (u_m - l_m) (a - l_a) / (u_a - l_a)`` (linear, increasing); target
``s cos(theta_y + m(a))`` (past pi SphereFace's psi), others ``s cos theta_j``. The margin follows
the *live* norm (the gradient flows through ``m(a)`` into |x| inside the clamp, as in the authors'
code), and the loss adds ``lambda_g g(a)``, ``g(a) = a / u_a^2 + 1 / a`` (mean over the batch).
Defaults (paper and authors' code): s = 64, l_a = 10, u_a = 110, l_m = 0.45, u_m = 0.8,
lambda_g = 35. The magnitude is the quality score: ``MagFace.magnitude(embeddings)``.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from marginface.heads.fused import BatchStats, LogitSpec, RowFunction
from marginface.heads.margin import MarginHead
from marginface.heads.spec_logits import angle_shift_target, stateful_logits
from marginface.validation import check_non_negative, check_positive

__all__ = ["MagFace"]


class MagFace(MarginHead):
    """MagFace: magnitude-aware angular margin and the regulariser ``lambda_g g(a)``."""

    def __init__(self, embedding_dim: int, num_classes: int, *, scale: float = 64.0,
                 l_a: float = 10.0, u_a: float = 110.0, l_m: float = 0.45, u_m: float = 0.8,
                 lambda_g: float = 35.0, block_size: int | None = None,
                 matmul_dtype: torch.dtype = torch.float32) -> None:
        super().__init__(embedding_dim, num_classes, scale=scale, block_size=block_size,
                         matmul_dtype=matmul_dtype)
        self.l_a, self.u_a = check_positive("l_a", l_a), check_positive("u_a", u_a)
        if self.l_a >= self.u_a:
            raise ValueError(f"l_a must be < u_a, got l_a={l_a!r}, u_a={u_a!r}")
        self.l_m, self.u_m = check_non_negative("l_m", l_m), check_non_negative("u_m", u_m)
        if self.l_m > self.u_m:
            raise ValueError(f"l_m must be <= u_m, got l_m={l_m!r}, u_m={u_m!r}")
        if self.u_m >= math.pi:
            raise ValueError(f"u_m must be an angle in radians below pi, got {u_m!r}")
        self.lambda_g = check_non_negative("lambda_g", lambda_g)

    @property
    def slope(self) -> float:
        """``dm/da`` inside ``[l_a, u_a]``."""
        return (self.u_m - self.l_m) / (self.u_a - self.l_a)

    def margin(self, norms: Tensor) -> Tensor:
        """``m(a)`` of the (clamped) magnitudes."""
        return self.l_m + self.slope * (norms.clamp(self.l_a, self.u_a) - self.l_a)

    def magnitude(self, embeddings: Tensor) -> Tensor:
        """The quality score: the feature magnitude ``|x|`` (batch,), no gradient."""
        with torch.no_grad():
            return embeddings.detach().to(self.compute_dtype(embeddings)).norm(dim=1)

    def _target(self, cos: Tensor, norm: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        value, grad, dshift = angle_shift_target(cos, self.margin(norm))
        inside = (norm > self.l_a) & (norm < self.u_a)
        return value, grad, torch.where(inside, dshift * self.slope, torch.zeros_like(dshift))

    def logit_spec(self, stats: BatchStats | None = None) -> LogitSpec:
        return dataclasses.replace(super().logit_spec(stats), target_fn=RowFunction(self._target))

    def g(self, norms: Tensor) -> Tensor:
        """``g(a) = a / u_a^2 + 1 / a`` of the clamped magnitudes."""
        a = norms.clamp(self.l_a, self.u_a)
        return a / self.u_a**2 + 1.0 / a

    def extra_loss(self, embeddings: Tensor, labels: Tensor) -> Tensor | None:
        if self.lambda_g == 0.0:
            return None
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            norms = embeddings.to(self.compute_dtype(embeddings)).norm(dim=1)
            return self.lambda_g * self.g(norms)

    def _logits(self, embeddings: Tensor, labels: Tensor | None) -> Tensor:
        return stateful_logits(self, embeddings, labels)

    def _unfused_cross_entropy(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        loss = F.cross_entropy(self._logits(embeddings, labels), labels.long())
        extra = self.extra_loss(embeddings, labels)
        return loss if extra is None else loss + extra.mean()

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, l_a={self.l_a}, u_a={self.u_a}, l_m={self.l_m}, "
                f"u_m={self.u_m}, lambda_g={self.lambda_g}")
