"""Caffe ``CombinedMargin`` (ArcFace paper eq. 4; gehaocool/CombinedMargin-caffe).

On each sample's target entry (CPU forward, TRAIN and TEST alike; ``transform_test`` is stored and
has no effect): ``z = cos(m1*acos(cos) + m2) - m3``. Samples with a negative label are skipped.
Unlike ``marginface.functional`` there is no monotone extension past pi: this is Caffe's value.
Inputs outside [-1, 1] (where Caffe's acos gives NaN) are clamped to [-1, 1].

Gradient (true derivative): ``m1*sin(m1*theta + m2)/sin(theta)``, the same formula as Caffe's
backward; theta is clamped to [sqrt(eps), pi - sqrt(eps)] there so it stays finite, and it is 0
where the input was clamped.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from marginface.caffe.margin_layers._common import (
    as_rows,
    check_finite,
    label_vector,
    value_with_grad,
)

__all__ = ["CombinedMargin", "combined_margin_target"]


def combined_margin_target(cos: Tensor, m1: float, m2: float, m3: float
                           ) -> tuple[Tensor, Tensor]:
    """Value and derivative of ``cos(m1*acos(c) + m2) - m3`` elementwise (no autograd)."""
    c = cos.detach()
    inside = (c >= -1.0) & (c <= 1.0)
    c = c.clamp(-1.0, 1.0)
    theta = torch.acos(c)
    value = torch.cos(m1 * theta + m2) - m3
    delta = math.sqrt(torch.finfo(c.dtype).eps)
    theta_safe = theta.clamp(delta, math.pi - delta)
    grad = m1 * torch.sin(m1 * theta_safe + m2) / torch.sin(theta_safe)
    return value, torch.where(inside, grad, torch.zeros_like(grad))


class CombinedMargin(nn.Module):
    """Target logit ``cos(m1*theta_y + m2) - m3``; defaults are Caffe's (4, 0.5, 0.35)."""

    def __init__(self, m1: float = 4.0, m2: float = 0.5, m3: float = 0.35,
                 transform_test: bool = False) -> None:
        super().__init__()
        check_finite("CombinedMargin", m1=m1, m2=m2, m3=m3)
        if m1 <= 0:
            raise ValueError(f"CombinedMargin: m1 must be > 0, got {m1!r}")
        self.m1, self.m2, self.m3 = float(m1), float(m2), float(m3)
        self.transform_test = bool(transform_test)

    def forward(self, bottom: Tensor, label: Tensor) -> Tensor:
        rows = as_rows(bottom, "CombinedMargin")
        labels = label_vector(label, rows.shape[0], rows.shape[1], "CombinedMargin",
                              allow_negative=True)
        keep = (labels >= 0).nonzero().squeeze(1)
        if keep.numel() == 0:
            return bottom.clone()
        cols = labels[keep]
        target = rows[keep, cols]
        value, grad = combined_margin_target(target, self.m1, self.m2, self.m3)
        out = rows.index_put((keep, cols), value_with_grad(target, value, grad))
        return out.reshape(bottom.shape)

    def extra_repr(self) -> str:
        return (f"m1={self.m1}, m2={self.m2}, m3={self.m3}, "
                f"transform_test={self.transform_test}")
