"""Two test heads built on the head interface, and their unfused restatements in plain torch.

- ``NormMarginArcFace``: ArcFace with a per-sample margin ``m_i = b_i + slope * |x_i|`` (``b_i``
  a per-sample base from the label, the norm detached or not: the radial term d t / d|x|) and an
  optional MagFace-like regulariser ``reg * (1/|x| + |x|/100)`` through ``extra_loss``;
- ``CurricularLike``: CurricularFace's hard negatives ``cos_j (t + cos_j)`` for
  ``cos_j > cos(theta_y + m)``, with ``t`` a moving average of the global batch's mean target
  cosine (``needs_target_cos``, ``update_state``).

Not shipped heads: they show that the interface carries the modern heads.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from marginface import functional as MF
from marginface.heads import ArcFace, BatchStats, LogitSpec, RowFunction

__all__ = ["NormMarginArcFace", "CurricularLike", "reference_norm_margin", "reference_curricular"]


def _psi_and_slope(phi: Tensor) -> tuple[Tensor, Tensor]:
    """psi(phi) and d psi / d phi = -(-1)^k sin(phi)."""
    k = torch.floor(phi / math.pi)
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
    return sign * torch.cos(phi) - 2.0 * k, -sign * torch.sin(phi)


def _label_base(labels: Tensor, margin: float, dtype: torch.dtype) -> Tensor:
    return margin + 0.05 * torch.remainder(labels, 3).to(dtype)


class NormMarginArcFace(ArcFace):
    """Target ``s psi(theta_y + b_i + slope |x_i|)``; ``b_i = margin + 0.05 (y_i mod 3)``."""

    def __init__(self, embedding_dim: int, num_classes: int, *, slope: float = 0.05,
                 detach_norm: bool = False, reg: float = 0.0, **kwargs) -> None:
        super().__init__(embedding_dim, num_classes, **kwargs)
        self.slope, self.detach_norm, self.reg = slope, detach_norm, reg

    @staticmethod
    def _fixed(cos: Tensor, norm: Tensor, m: Tensor):
        value, grad = MF.margin_target_and_grad(cos, 1.0, m)
        return value, grad, None

    def _live(self, cos: Tensor, norm: Tensor, base: Tensor):
        m = base + self.slope * norm
        value, grad = MF.margin_target_and_grad(cos, 1.0, m)
        _, dpsi = _psi_and_slope(torch.acos(cos.clamp(-1.0, 1.0)) + m)
        return value, grad, dpsi * self.slope

    def logit_spec(self, stats: BatchStats | None = None) -> LogitSpec:
        base = _label_base(stats.labels, self.m2, stats.norms.dtype)
        if self.detach_norm:
            target = RowFunction(self._fixed, (base + self.slope * stats.norms,))
        else:
            target = RowFunction(self._live, (base,))
        return dataclasses.replace(super().logit_spec(stats), target_fn=target)

    def extra_loss(self, embeddings: Tensor, labels: Tensor) -> Tensor | None:
        if self.reg == 0.0:
            return None
        a = embeddings.norm(dim=1)
        return self.reg * (1.0 / a + a / 100.0)


def reference_norm_margin(head: NormMarginArcFace, x: Tensor, w: Tensor, y: Tensor) -> Tensor:
    """``head.loss`` restated: full logits in plain torch, then ``F.cross_entropy``."""
    cos = F.normalize(x, dim=1) @ F.normalize(w, dim=1).t()
    norm = x.norm(dim=1)
    m = _label_base(y, head.m2, x.dtype) + head.slope * (norm.detach() if head.detach_norm
                                                        else norm)
    cos_y = cos.gather(1, y[:, None]).squeeze(1)
    target, _ = _psi_and_slope(torch.acos(cos_y) + m)
    logits = head.scale * cos.scatter(1, y[:, None], target[:, None])
    loss = F.cross_entropy(logits, y)
    if head.reg:
        loss = loss + (head.reg * (1.0 / norm + norm / 100.0)).mean()
    return loss


def _hard(cos: Tensor, threshold: Tensor, t: Tensor):
    """CurricularFace's negatives: ``cos (t + cos)`` above the threshold, ``cos`` below."""
    mask = cos > threshold
    return torch.where(mask, cos * (t + cos), cos), torch.where(mask, t + 2.0 * cos,
                                                                torch.ones_like(cos))


class CurricularLike(ArcFace):
    """ArcFace target, negatives above ``cos(theta_y + m)`` become ``cos (t + cos)``."""

    needs_target_cos = True
    t: Tensor

    def __init__(self, embedding_dim: int, num_classes: int, *, t: float = 0.0,
                 **kwargs) -> None:
        super().__init__(embedding_dim, num_classes, **kwargs)
        self.register_buffer("t", torch.tensor(float(t)))

    def update_state(self, stats: BatchStats) -> None:
        with torch.no_grad():
            self.t.mul_(0.99).add_(0.01 * stats.target_cos.mean().to(self.t.dtype))

    def logit_spec(self, stats: BatchStats | None = None) -> LogitSpec:
        cos_y = stats.target_cos
        threshold, _ = MF.margin_target_and_grad(cos_y, 1.0, self.m2)
        t = self.t.to(cos_y.dtype).expand_as(cos_y)
        return dataclasses.replace(super().logit_spec(stats),
                                   negatives=RowFunction(_hard, (threshold, t)))


def reference_curricular(head: CurricularLike, x: Tensor, w: Tensor, y: Tensor,
                         t: float) -> Tensor:
    """``head.loss`` restated with ``t`` (the value after any state update)."""
    cos = F.normalize(x, dim=1) @ F.normalize(w, dim=1).t()
    cos_y = cos.gather(1, y[:, None]).squeeze(1)
    target, _ = _psi_and_slope(torch.acos(cos_y) + head.m2)
    threshold = target.detach()[:, None]
    negatives = torch.where(cos > threshold, cos * (t + cos), cos)
    logits = head.scale * negatives.scatter(1, y[:, None], target[:, None])
    return F.cross_entropy(logits, y)
