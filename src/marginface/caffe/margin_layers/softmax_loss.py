"""Caffe ``SoftmaxWithLoss``: softmax over ``axis`` then the mean negative log-likelihood.

``loss = -sum_i log(max(p_i[label_i], FLT_MIN)) / normalizer`` over the positions whose label is
not ``ignore_label``. ``normalization`` (LossParameter): VALID (default: the number of counted
positions), FULL (all positions), BATCH_SIZE (outer count), NONE (1); the legacy ``normalize``
field, when given, means VALID (true) or BATCH_SIZE (false). The normaliser is at least 1.
With ``num_tops=2`` the probabilities are returned as well.

Gradient: autograd's, i.e. ``(p - onehot) / normalizer`` exactly as Caffe except where a
probability fell below FLT_MIN: there the forward is flat (clamped) and the true derivative 0,
where Caffe's backward still gives ``p - 1``. ``loss_weight`` is the net's business.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from marginface.caffe.margin_layers._common import check_tops, label_vector

__all__ = ["SoftmaxWithLoss", "FLT_MIN"]

#: Smallest normal float32, Caffe's floor for probabilities inside the log.
FLT_MIN = 1.1754943508222875e-38
_NORMALIZATIONS = ("FULL", "VALID", "BATCH_SIZE", "NONE")


class SoftmaxWithLoss(nn.Module):
    """Caffe's fused softmax + multinomial logistic loss, returning a 0-d loss tensor."""

    def __init__(self, *, axis: int = 1, ignore_label: int | None = None,
                 normalization: str = "VALID", normalize: bool | None = None,
                 num_tops: int = 1) -> None:
        super().__init__()
        if normalize is not None:
            normalization = "VALID" if normalize else "BATCH_SIZE"
        if normalization not in _NORMALIZATIONS:
            raise ValueError(f"SoftmaxWithLoss: normalization must be one of {_NORMALIZATIONS}, "
                             f"got {normalization!r}")
        self.axis = int(axis)
        self.ignore_label = None if ignore_label is None else int(ignore_label)
        self.normalization = normalization
        self.num_tops = check_tops("SoftmaxWithLoss", num_tops, (1, 2))

    def forward(self, bottom: Tensor, label: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        if not isinstance(bottom, Tensor) or not bottom.is_floating_point() or bottom.dim() < 1:
            raise ValueError("SoftmaxWithLoss: bottom must be a floating-point tensor")
        axis = self.axis if self.axis >= 0 else bottom.dim() + self.axis
        if not 0 <= axis < bottom.dim():
            raise ValueError(f"SoftmaxWithLoss: axis {self.axis} is out of range for shape "
                             f"{tuple(bottom.shape)}")
        outer = math.prod(bottom.shape[:axis])
        inner = math.prod(bottom.shape[axis + 1:])
        channels = bottom.shape[axis]
        # (outer*inner, channels), positions in Caffe's (outer, inner) order
        scores = bottom.reshape(outer, channels, inner).transpose(1, 2).reshape(-1, channels)
        flat = label.reshape(-1) if isinstance(label, Tensor) else label
        valid = None
        if self.ignore_label is not None and isinstance(flat, Tensor):
            valid = flat != self.ignore_label
            flat = torch.where(valid, flat, torch.zeros_like(flat))
        labels = label_vector(flat, outer * inner, channels, "SoftmaxWithLoss")
        log_p = F.log_softmax(scores, dim=1).gather(1, labels.unsqueeze(1)).squeeze(1)
        nll = -torch.clamp(log_p, min=math.log(FLT_MIN))
        if valid is not None:
            nll = torch.where(valid.to(nll.device), nll, torch.zeros_like(nll))
            count = int(valid.sum())
        else:
            count = outer * inner
        normalizer = {"FULL": outer * inner, "VALID": count, "BATCH_SIZE": outer,
                      "NONE": 1}[self.normalization]
        loss = nll.sum() / max(1.0, float(normalizer))
        if self.num_tops == 2:
            return loss, F.softmax(bottom, dim=axis)
        return loss

    def extra_repr(self) -> str:
        return (f"axis={self.axis}, ignore_label={self.ignore_label}, "
                f"normalization={self.normalization!r}")
