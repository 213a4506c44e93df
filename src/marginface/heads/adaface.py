"""AdaFace (Kim et al., "AdaFace: Quality Adaptive Margin for Face Recognition", CVPR 2022).

The feature norm, a proxy of image quality, sets each sample's margin. With the norm detached and
clipped to ``[0.001, 100]``, ``z_i = clip(h (|x_i| - mu) / (sigma + eps), -1, 1)`` (eps = 1e-3),
``mu, sigma`` moving averages of the batch's norm mean and (unbiased) standard deviation,
``mu <- a mean + (1 - a) mu`` with ``a = 0.01``, starting at mu = 20, sigma = 100, updated before
the batch's logits use them (paper eq. 11-13 and the authors' code). Target
``s (cos(theta_y + g_angle) - g_add)`` with ``g_angle = -m z``, ``g_add = m z + m``; the others
``s cos theta_j``. Defaults s = 64, m = 0.4, h = 0.333 (paper). Below ``theta_y + g_angle = 0``
the target is flat at ``1 - g_add`` (the authors clip the angle), past pi it follows psi. Under
DDP/sharding the statistics come from the *global* batch (``BatchStats``; the authors' code uses
each rank's own), so every rank holds the same ``mu, sigma``. A batch of one sample keeps sigma.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from marginface.heads.fused import BatchStats, LogitSpec, RowFunction
from marginface.heads.margin import MarginHead
from marginface.heads.spec_logits import angle_shift_target, stateful_logits
from marginface.validation import check_in_range, check_positive

__all__ = ["AdaFace", "adaface_target"]

NORM_CLIP = (0.001, 100.0)  # the authors' safe norms
STD_EPS = 1e-3


def adaface_target(cos: Tensor, norm: Tensor, g_angle: Tensor,
                   g_add: Tensor) -> tuple[Tensor, Tensor, None]:
    """``psi(max(theta + g_angle, 0)) - g_add`` and ``dt/dcos`` (norm detached: no radial term)."""
    value, grad, _ = angle_shift_target(cos, g_angle, g_add)
    return value, grad, None


class AdaFace(MarginHead):
    """AdaFace: norm-adaptive angular and additive margins; buffers ``batch_mean``, ``batch_std``.

    ``momentum`` (the authors' ``t_alpha`` = 0.01) is the weight of the new batch in the averages.
    """

    batch_mean: Tensor
    batch_std: Tensor

    def __init__(self, embedding_dim: int, num_classes: int, *, scale: float = 64.0,
                 margin: float = 0.4, h: float = 0.333, momentum: float = 0.01,
                 block_size: int | None = None,
                 matmul_dtype: torch.dtype = torch.float32) -> None:
        super().__init__(embedding_dim, num_classes, scale=scale, block_size=block_size,
                         matmul_dtype=matmul_dtype)
        # g_add reaches 2m and the angle moves by up to m: keep m below pi/2
        self.margin = check_in_range("margin", margin, 0.0, math.pi / 2 - 1e-9,
                                     "an angle in radians")
        self.h = check_positive("h", h)
        self.momentum = check_in_range("momentum", momentum, 0.0, 1.0)
        self.register_buffer("batch_mean", torch.tensor(20.0))
        self.register_buffer("batch_std", torch.tensor(100.0))

    def update_state(self, stats: BatchStats) -> None:
        with torch.no_grad():
            safe = stats.norms.clamp(*NORM_CLIP).to(self.batch_mean.dtype)
            a = self.momentum
            self.batch_mean.mul_(1.0 - a).add_(a * safe.mean())
            if safe.numel() > 1:  # the unbiased std of one sample is undefined
                self.batch_std.mul_(1.0 - a).add_(a * safe.std())

    def norm_scaler(self, norms: Tensor) -> Tensor:
        """``z = clip(h (|x| - mu) / (sigma + eps), -1, 1)`` of detached norms (current state)."""
        safe = norms.detach().clamp(*NORM_CLIP)
        mean, std = self.batch_mean.to(safe.dtype), self.batch_std.to(safe.dtype)
        return (self.h * (safe - mean) / (std + STD_EPS)).clamp(-1.0, 1.0)

    def logit_spec(self, stats: BatchStats | None = None) -> LogitSpec:
        z = self.norm_scaler(stats.norms)
        params = (-self.margin * z, self.margin * z + self.margin)
        return dataclasses.replace(super().logit_spec(stats),
                                   target_fn=RowFunction(adaface_target, params))

    def _logits(self, embeddings: Tensor, labels: Tensor | None) -> Tensor:
        return stateful_logits(self, embeddings, labels)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, margin={self.margin}, h={self.h}"
