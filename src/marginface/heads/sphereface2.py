"""SphereFace2 (Wen, Liu, Weller, Raj, Singh, "SphereFace2: Binary Classification is All You Need
for Deep Face Recognition", ICLR 2022).

One binary (one-vs-all) classifier per class on the hypersphere, with the similarity adjustment
``g(c) = 2 ((c + 1) / 2)^t - 1``, the scale ``r``, a margin ``m``, the positive/negative balance
``lambda`` and one learnable bias ``b``:

    L = lambda / r * log(1 + exp(-(r t(cos_y) + b)))
        + (1 - lambda) / r * sum_{j != y} log(1 + exp(r n(cos_j) + b))

Margin variants (``margin_type``): "C" (additive cosine margin, the paper's main loss)
``t = g(cos) - m``, ``n = g(cos) + m``; "A" (additive angular) ``t = g(cos(min(theta + m, pi)))``,
``n = g(cos)``; "M" (multiplicative angular, m >= 1) ``t = g(cos(min(m theta, pi)))``,
``n = g(cos)``. Defaults lambda = 0.7, r = 40, m = 0.4, t = 3 (the paper's SphereFace2-C
setting, as in the authors' OpenSphere release). ``b`` starts where the gradients of the
positive and of the C - 1 negative terms balance at cos = 0 (the paper's positive/negative
balance principle; the authors initialise it the same way): with ``z = lambda / ((1 - lambda)
(C - 1))`` and the scores ``a_y, a_n`` at cos = 0,
``b = log(2z) - a_n - log(1 - z + sqrt((1 - z)^2 + 4 z exp(a_y - a_n)))`` (for z > 1, i.e. a
handful of classes, the same root in its cancellation-free form).
The gradient here is the exact derivative of the loss (the authors' code passes it straight
through g and the margin); the authors also multiply the loss by 50, a learning-rate choice left
to the optimiser here.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from marginface import functional as MF
from marginface.heads.binary import BinaryHead
from marginface.heads.fused import BatchStats, LogitSpec, RowFunction
from marginface.validation import (
    check_choice,
    check_in_range,
    check_non_negative,
    check_positive,
)

__all__ = ["SphereFace2", "similarity_adjustment", "sphereface2_bias_init"]

MARGIN_TYPES = ("C", "A", "M")


def similarity_adjustment(cos: Tensor, t: float) -> tuple[Tensor, Tensor]:
    """``g(c) = 2 ((c + 1) / 2)^t - 1`` and ``g'(c) = t ((c + 1) / 2)^(t - 1)``."""
    u = ((cos + 1.0) * 0.5).clamp_min(0.0)
    return 2.0 * u.pow(t) - 1.0, t * u.pow(t - 1.0)


def _angular_target(cos: Tensor, m1: float, m2: float) -> tuple[Tensor, Tensor]:
    """``cos(min(m1 theta + m2, pi))`` and its derivative in ``cos`` (0 past pi)."""
    value, grad = MF.margin_target_and_grad(cos, m1, m2, 0.0)
    beyond = m1 * torch.acos(cos.clamp(-1.0, 1.0)) + m2 >= math.pi
    return (torch.where(beyond, torch.full_like(value, -1.0), value),
            torch.where(beyond, torch.zeros_like(grad), grad))


def sphereface2_bias_init(num_classes: int, *, scale: float, margin: float, lambda_: float,
                          t: float, margin_type: str = "C") -> float:
    """The bias at which the positive and negative gradients balance for cos = 0 (see module)."""
    if num_classes < 2:
        return 0.0
    g0 = 2.0 * 0.5**t - 1.0
    if margin_type == "C":
        a_y, a_n = scale * (g0 - margin), scale * (g0 + margin)
    else:
        phi = math.pi / 2 + margin if margin_type == "A" else margin * math.pi / 2
        a_y = scale * (2.0 * ((math.cos(min(phi, math.pi)) + 1.0) / 2.0)**t - 1.0)
        a_n = scale * g0
    z = lambda_ / ((1.0 - lambda_) * (num_classes - 1))
    delta = a_y - a_n
    root = math.sqrt((1.0 - z)**2 + 4.0 * z * math.exp(delta))
    # v = exp(a_n + b) solves exp(delta) v^2 + (1 - z) v - z = 0; the two forms of its positive
    # root avoid the cancellation of 1 - z + root (z < 1) and of z - 1 - root (z > 1)
    if z <= 1.0:
        log_v = math.log(2.0 * z) - math.log(1.0 - z + root)
    else:
        log_v = math.log(z - 1.0 + root) - math.log(2.0) - delta
    return log_v - a_n


class SphereFace2(BinaryHead):
    """SphereFace2: per-class binary losses, similarity adjustment ``g``; ``bias`` (1,)."""

    def __init__(self, embedding_dim: int, num_classes: int, *, scale: float = 40.0,
                 margin: float = 0.4, lambda_: float = 0.7, t: float = 3.0,
                 margin_type: str = "C", block_size: int | None = None,
                 matmul_dtype: torch.dtype = torch.float32) -> None:
        check_choice("margin_type", margin_type, MARGIN_TYPES)
        if margin_type == "C":
            margin = check_non_negative("margin", margin)
        elif margin_type == "A":
            margin = check_in_range("margin", margin, 0.0, math.pi - 1e-9, "an angle in radians")
        elif isinstance(margin, bool) or not (isinstance(margin, (int, float))
                                              and math.isfinite(margin) and margin >= 1.0):
            raise ValueError(f"margin must be a finite number >= 1 for margin_type 'M' "
                             f"(a multiplicative angular margin), got {margin!r}")
        lambda_ = check_in_range("lambda_", lambda_, 0.0, 1.0, "a weight")
        if not 0.0 < lambda_ < 1.0:
            raise ValueError(f"lambda_ must be in (0, 1), got {lambda_!r}")
        t = check_positive("t", t)
        if t < 1.0:  # g'(-1) = t 0^(t-1) is infinite below t = 1
            raise ValueError(f"t must be >= 1, got {t!r}")
        scale = check_positive("scale", scale)
        self.margin, self.lambda_, self.t, self.margin_type = float(margin), lambda_, t, margin_type
        super().__init__(embedding_dim, num_classes, scale=scale,
                         bias_init=sphereface2_bias_init(
                             num_classes, scale=scale, margin=self.margin, lambda_=lambda_, t=t,
                             margin_type=margin_type),
                         block_size=block_size, matmul_dtype=matmul_dtype)

    def _target(self, cos: Tensor, norm: Tensor) -> tuple[Tensor, Tensor, None]:
        if self.margin_type == "C":
            value, grad = similarity_adjustment(cos, self.t)
            return value - self.margin, grad, None
        m1, m2 = (1.0, self.margin) if self.margin_type == "A" else (self.margin, 0.0)
        c, dc = _angular_target(cos, m1, m2)
        value, grad = similarity_adjustment(c, self.t)
        return value, grad * dc, None

    def _negatives(self, cos: Tensor) -> tuple[Tensor, Tensor]:
        value, grad = similarity_adjustment(cos, self.t)
        return (value + self.margin if self.margin_type == "C" else value), grad

    def plain_scores(self, cos: Tensor) -> Tensor:
        return self.scale * (2.0 * ((cos + 1.0) * 0.5).clamp_min(0.0).pow(self.t) - 1.0)

    def logit_spec(self, stats: BatchStats | None = None) -> LogitSpec:
        return dataclasses.replace(
            super().logit_spec(stats), binary=True, target_fn=RowFunction(self._target),
            negatives=RowFunction(self._negatives), pos_weight=self.lambda_,
            neg_weight=1.0 - self.lambda_, loss_scale=1.0 / self.scale)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, margin={self.margin}, lambda_={self.lambda_}, "
                f"t={self.t}, margin_type={self.margin_type!r}")
