"""Plain-torch restatements of the binary heads' papers, unfused, with autograd.

Full (batch, classes) cosines, the papers' formulas term by term; the fused loss, ``forward``,
``unfused_loss`` and the sharded loss are checked against these
(tests/heads/test_binary_heads.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from modern_references import psi
from torch import Tensor

__all__ = ["sphereface2_scores", "sphereface2_loss", "uniface_scores", "uniface_loss"]


def _cos(x: Tensor, w: Tensor) -> Tensor:
    return F.normalize(x, dim=1) @ F.normalize(w, dim=1).t()


def _softplus(z: Tensor) -> Tensor:
    """log(1 + e^z), exact everywhere (F.softplus is linear above its threshold of 20)."""
    return torch.logaddexp(z, torch.zeros_like(z))


def _onehot(y: Tensor, classes: int) -> Tensor:
    return F.one_hot(y, classes).to(torch.float64)


def sphereface2_scores(x, w, b, y, *, r, m, t, margin_type):
    """Wen et al. 2022: (positive scores, negative scores), both (batch, classes)."""
    cos = _cos(x, w)

    def g(c):
        return 2.0 * ((c + 1.0) / 2.0) ** t - 1.0

    if margin_type == "C":
        return r * (g(cos) - m) + b, r * (g(cos) + m) + b
    theta = torch.acos(cos)
    phi = theta + m if margin_type == "A" else m * theta
    return r * g(torch.cos(torch.clamp(phi, max=math.pi))) + b, r * g(cos) + b


def sphereface2_loss(x, w, b, y, *, r, m, lam, t, margin_type="C"):
    """lambda/r log(1+e^-(pos)) + (1-lambda)/r sum_{j!=y} log(1+e^(neg_j)), batch mean."""
    pos, neg = sphereface2_scores(x, w, b, y, r=r, m=m, t=t, margin_type=margin_type)
    onehot = _onehot(y, w.shape[0])
    per = lam / r * _softplus(-pos) * onehot + (1.0 - lam) / r * _softplus(neg) * (1 - onehot)
    return per.sum(1).mean()


def uniface_scores(x, w, b, y, *, s, m, margin_type):
    """Zhou et al. 2023: (positive scores, negative scores), threshold b subtracted."""
    cos = _cos(x, w)
    target = cos - m if margin_type == "cos" else psi(torch.acos(cos) + m)
    return s * target - b, s * cos - b


def uniface_loss(x, w, b, y, *, s, m, lam, margin_type="cos"):
    """log(1+e^-(s t(cos_y) - b)) + lambda sum_{j!=y} log(1+e^(s cos_j - b)), batch mean."""
    pos, neg = uniface_scores(x, w, b, y, s=s, m=m, margin_type=margin_type)
    onehot = _onehot(y, w.shape[0])
    per = _softplus(-pos) * onehot + lam * _softplus(neg) * (1 - onehot)
    return per.sum(1).mean()
