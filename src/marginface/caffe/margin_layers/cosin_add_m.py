"""Caffe ``CosinAddm`` (ArcFace, Deng et al. 2019; xialuxi/arcface-caffe): additive angular margin.

On each sample's target entry only (CPU forward, applied in TRAIN and TEST alike; ``transform_test``
is stored and has no effect there):

- ``cos(theta) > 1`` is clamped to 1;
- if ``cos(theta) <= cos(pi - m)`` (theta + m would pass pi): ``z = cos(theta) - m*sin(m)``;
- else ``z = cos(theta)*cos(m) - sqrt(1 - cos^2)*sin(m) = cos(theta + m)``.

Gradient (true derivative of this forward): ``cos(m) + sin(m)*cos/sin(theta)`` on the main branch,
1 on the fallback branch, 0 where the input was clamped (above 1). Near cos = 1 the derivative is
unbounded; it is evaluated at theta = sqrt(eps) as ``marginface.functional`` does, so it stays
finite. Caffe's backward uses 1 where ``sin(theta) = 0`` and the same formula elsewhere.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from marginface.caffe.margin_layers._common import as_rows, label_vector, value_with_grad
from marginface.functional import margin_target_and_grad

__all__ = ["CosinAddm", "cosin_add_m_target"]


def cosin_add_m_target(cos: Tensor, m: float) -> tuple[Tensor, Tensor]:
    """Value and derivative of CosinAddm's target map, elementwise over ``cos`` (no autograd)."""
    c = cos.detach()
    over = c > 1.0
    c = torch.where(over, torch.ones_like(c), c)
    fallback = c <= math.cos(math.pi - m)
    sin_theta = torch.sqrt(torch.clamp(1.0 - c * c, min=0.0))
    main = c * math.cos(m) - sin_theta * math.sin(m)
    value = torch.where(fallback, c - m * math.sin(m), main)
    # main branch: theta + m <= pi, so the shared additive-angle derivative applies (k = 0)
    _, grad_main = margin_target_and_grad(c, 1.0, m, 0.0)
    grad = torch.where(fallback, torch.ones_like(c), grad_main.to(c.dtype))
    grad = torch.where(over, torch.zeros_like(c), grad)
    return value, grad


class CosinAddm(nn.Module):
    """Target logit ``cos(theta_y + m)``, with Caffe's fallback ``cos - m*sin(m)`` past pi - m."""

    def __init__(self, m: float = 0.5, transform_test: bool = False) -> None:
        super().__init__()
        if not (isinstance(m, (int, float)) and math.isfinite(m) and 0.0 <= m < math.pi):
            raise ValueError(f"CosinAddm: m must be an angle in radians in [0, pi), got {m!r}")
        self.m = float(m)
        self.transform_test = bool(transform_test)

    def forward(self, bottom: Tensor, label: Tensor) -> Tensor:
        rows = as_rows(bottom, "CosinAddm")
        labels = label_vector(label, rows.shape[0], rows.shape[1], "CosinAddm")
        index = labels.unsqueeze(1)
        target = rows.gather(1, index)
        value, grad = cosin_add_m_target(target, self.m)
        return rows.scatter(1, index, value_with_grad(target, value, grad)).reshape(bottom.shape)

    def extra_repr(self) -> str:
        return f"m={self.m}, transform_test={self.transform_test}"
