"""Caffe ``LabelSpecificAdd`` (AM-Softmax / CosFace, Wang et al. 2018; happynear's caffe).

TRAIN: ``z_y = cos(theta_y) + bias`` only where ``cos(theta_y) > -bias`` (else unchanged); the other
entries are unchanged. TEST: identity. ``transform_test`` is stored but, as in Caffe (where it is
ANDed with phase == TRAIN), can never switch the margin on in TEST.

Annealing (a later version of the layer, active when ``bias_base`` is given): every TRAIN forward
first sets ``bias = clamp(bias_base + (1 + bias_gamma*iteration)^bias_power - 1, bias_min,
bias_max)`` and then increments ``iteration`` (kept as a buffer, saved in the state_dict).
With ``num_tops=2`` the current bias is returned as a second output of shape (1,).

Gradient: 1 on every entry (the true derivative almost everywhere; the jump where
``cos(theta_y) = -bias`` has no derivative), which is also Caffe's identity backward.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from marginface.caffe.margin_layers._common import as_rows, check_finite, check_tops, label_vector

__all__ = ["LabelSpecificAdd"]


class LabelSpecificAdd(nn.Module):
    """Add ``bias`` (a negative margin, e.g. -0.35) to each sample's target logit in TRAIN."""

    def __init__(self, bias: float = 0.0, transform_test: bool = False, *,
                 bias_base: float | None = None, bias_gamma: float = 0.0,
                 bias_power: float = 1.0, bias_min: float = -math.inf,
                 bias_max: float = math.inf, iteration: int = 0, num_tops: int = 1) -> None:
        super().__init__()
        check_finite("LabelSpecificAdd", bias=bias, bias_gamma=bias_gamma,
                     bias_power=bias_power)
        if bias_base is not None:
            check_finite("LabelSpecificAdd", bias_base=bias_base)
        if math.isnan(bias_min) or math.isnan(bias_max) or bias_min > bias_max:
            raise ValueError(f"LabelSpecificAdd: need bias_min <= bias_max, got "
                             f"{bias_min!r} > {bias_max!r}")
        if not (isinstance(iteration, int) and iteration >= 0):
            raise ValueError(f"LabelSpecificAdd: iteration must be an integer >= 0, "
                             f"got {iteration!r}")
        self.bias = float(bias)
        self.transform_test = bool(transform_test)
        self.bias_base = None if bias_base is None else float(bias_base)
        self.bias_gamma = float(bias_gamma)
        self.bias_power = float(bias_power)
        self.bias_min = float(bias_min)
        self.bias_max = float(bias_max)
        self.num_tops = check_tops("LabelSpecificAdd", num_tops, (1, 2))
        self.register_buffer("iteration", torch.tensor(int(iteration), dtype=torch.long))

    def annealed_bias(self, iteration: int) -> float:
        """``clamp(bias_base + (1 + bias_gamma*iteration)^bias_power - 1, bias_min, bias_max)``."""
        if self.bias_base is None:
            return self.bias
        value = self.bias_base + (1.0 + self.bias_gamma * iteration) ** self.bias_power - 1.0
        return min(max(value, self.bias_min), self.bias_max)

    def forward(self, bottom: Tensor, label: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        rows = as_rows(bottom, "LabelSpecificAdd")
        labels = label_vector(label, rows.shape[0], rows.shape[1], "LabelSpecificAdd")
        if self.training:
            if self.bias_base is not None:
                self.bias = self.annealed_bias(int(self.iteration))
                self.iteration += 1
            index = labels.unsqueeze(1)
            target = rows.gather(1, index)
            shifted = target + self.bias * (target > -self.bias).to(target.dtype)
            top = rows.scatter(1, index, shifted).reshape(bottom.shape)
        else:
            top = bottom.clone()
        if self.num_tops == 2:
            return top, torch.full((1,), self.bias, dtype=bottom.dtype, device=bottom.device)
        return top

    def extra_repr(self) -> str:
        anneal = "" if self.bias_base is None else (
            f", bias_base={self.bias_base}, bias_gamma={self.bias_gamma}, "
            f"bias_power={self.bias_power}, bias_min={self.bias_min}, bias_max={self.bias_max}")
        return f"bias={self.bias}, transform_test={self.transform_test}{anneal}"
