"""Plain-torch restatements of the modern heads' papers, computed unfused with autograd.

Each takes the head's hyper-parameters and the state *before* the step, applies the paper's
update itself, and returns the mean loss over full (batch, classes) logits: the fused loss,
``forward`` and the sharded loss are checked against these (tests/heads/test_modern_heads.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["psi", "curricular_loss", "adaface_loss", "magface_loss", "elastic_loss",
           "elastic_plus_margins"]


def psi(phi: Tensor) -> Tensor:
    """cos on [0, pi], SphereFace's extension ``-cos(phi) - 2`` on (pi, 2 pi)."""
    return torch.where(phi <= math.pi, torch.cos(phi), -torch.cos(phi) - 2.0)


def _cos(x: Tensor, w: Tensor) -> Tensor:
    return F.normalize(x, dim=1) @ F.normalize(w, dim=1).t()


def _ce(cos: Tensor, y: Tensor, target: Tensor, scale: float, others: Tensor | None = None):
    rest = cos if others is None else others
    return F.cross_entropy(scale * rest.scatter(1, y[:, None], target[:, None]), y)


def curricular_loss(x, w, y, *, scale, margin, t, momentum=0.01, train=True):
    """Huang et al. 2020, eq. 8-10; returns (loss, t used)."""
    cos = _cos(x, w)
    cos_y = cos.gather(1, y[:, None]).squeeze(1)
    if train:
        t = momentum * float(cos_y.detach().mean()) + (1.0 - momentum) * t
    target = psi(torch.acos(cos_y) + margin)
    hard = cos > target.detach()[:, None]
    others = torch.where(hard, cos * (t + cos), cos)
    return _ce(cos, y, target, scale, others), t


def adaface_loss(x, w, y, *, scale, margin, h, mean, std, momentum=0.01, train=True):
    """Kim et al. 2022, eq. 11-13 (authors' EMA); returns (loss, mean, std used)."""
    norms = x.detach().norm(dim=1).clamp(0.001, 100.0)
    if train:
        mean = momentum * float(norms.mean()) + (1.0 - momentum) * mean
        std = momentum * float(norms.std()) + (1.0 - momentum) * std
    z = (h * (norms - mean) / (std + 1e-3)).clamp(-1.0, 1.0)
    cos = _cos(x, w)
    theta = torch.acos(cos.gather(1, y[:, None]).squeeze(1))
    target = psi((theta - margin * z).clamp_min(0.0)) - (margin * z + margin)
    return _ce(cos, y, target, scale), mean, std


def magface_loss(x, w, y, *, scale, l_a, u_a, l_m, u_m, lambda_g):
    """Meng et al. 2021, eq. 3-6: live norm in the margin, plus lambda_g * g(a)."""
    a = x.norm(dim=1).clamp(l_a, u_a)
    m = (u_m - l_m) / (u_a - l_a) * (a - l_a) + l_m
    cos = _cos(x, w)
    theta = torch.acos(cos.gather(1, y[:, None]).squeeze(1))
    target = psi(theta + m)
    return _ce(cos, y, target, scale) + lambda_g * (a / u_a**2 + 1.0 / a).mean()


def elastic_loss(x, w, y, margins, *, scale, arc):
    """Boutros et al. 2022, eq. 4-5 with the given per-sample margins."""
    cos = _cos(x, w)
    cos_y = cos.gather(1, y[:, None]).squeeze(1)
    target = psi(torch.acos(cos_y) + margins) if arc else cos_y - margins
    return _ce(cos, y, target, scale)


def elastic_plus_margins(x, w, y, draws):
    """Boutros et al. 2022, Sec. 3.3 (ElasticFace+): the sample far from its class centre gets the
    large margin. Rank r (0: the smallest target cosine) takes the r-th largest draw."""
    cos_y = _cos(x.detach(), w.detach()).gather(1, y[:, None]).squeeze(1)
    rank = torch.argsort(torch.argsort(cos_y))
    return torch.sort(draws, descending=True).values[rank]
