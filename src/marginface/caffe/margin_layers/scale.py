"""Caffe ``Scale``: ``y = x * s (+ b)``, s broadcast over the axes ``[axis, axis + len(s.shape))``.

One bottom: ``s`` is the learned blob 0 (``weight``) of shape ``x.shape[axis : axis+num_axes]``
(``num_axes = -1``: to the end, 0: a scalar), filled by ``filler`` (Caffe default constant 1).
Two bottoms: ``s`` is the second bottom (a scalar one applies everywhere) and the layer owns only
the bias. ``bias_term`` adds blob ``bias`` of the scale's shape (``bias_filler``, default 0).
The seed's fixed s (``param { lr_mult: 0 }``, constant filler 30) is ``Scale(filler={"type":
"constant", "value": 30}, learnable=False)``: note that Caffe's blob then holds one value per
class, shape (num_classes,), not a scalar. Shapes are taken from the first call unless
``scale_shape`` is given. The gradient is autograd's, identical to Caffe's backward.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.lazy import LazyModuleMixin

from marginface.caffe.fillers import fill

__all__ = ["Scale"]


class Scale(LazyModuleMixin, nn.Module):
    """Elementwise scale (and bias) with Caffe's axis broadcasting."""

    def __init__(self, *, axis: int = 1, num_axes: int = 1, bias_term: bool = False,
                 filler: Mapping[str, Any] | None = None,
                 bias_filler: Mapping[str, Any] | None = None, num_bottoms: int = 1,
                 scale_shape: tuple[int, ...] | None = None, learnable: bool = True) -> None:
        super().__init__()
        if num_bottoms not in (1, 2):
            raise ValueError(f"Scale: num_bottoms must be 1 or 2, got {num_bottoms!r}")
        if not (isinstance(num_axes, int) and num_axes >= -1):
            raise ValueError(f"Scale: num_axes must be an integer >= -1, got {num_axes!r}")
        self.axis = int(axis)
        self.num_axes = num_axes
        self.bias_term = bool(bias_term)
        self.num_bottoms = num_bottoms
        self.learnable = bool(learnable)
        self.filler = dict(filler or {"type": "constant", "value": 1.0})
        self.bias_filler = dict(bias_filler or {})
        self.weight: nn.Parameter | None = None
        self.bias: nn.Parameter | None = None
        if num_bottoms == 1:
            self.weight = self._new_param(scale_shape)
        if self.bias_term:
            self.bias = self._new_param(scale_shape)
        if scale_shape is not None:
            self.reset_parameters()

    def _new_param(self, shape: tuple[int, ...] | None) -> nn.Parameter:
        if shape is None:
            return nn.UninitializedParameter(requires_grad=self.learnable)
        return nn.Parameter(torch.empty(tuple(shape)), requires_grad=self.learnable)

    @property
    def blob_names(self) -> list[str]:
        """Parameter names in Caffe's blob order."""
        return ([] if self.num_bottoms == 2 else ["weight"]) + (["bias"] if self.bias_term else [])

    def reset_parameters(self) -> None:
        if self.has_uninitialized_params():
            return
        if self.weight is not None:
            fill(self.weight, self.filler, where="Scale weight")
        if self.bias is not None:
            fill(self.bias, self.bias_filler, where="Scale bias")

    def _axis(self, x: Tensor) -> int:
        axis = self.axis if self.axis >= 0 else x.dim() + self.axis
        if not 0 <= axis <= x.dim():
            raise ValueError(f"Scale: axis {self.axis} is out of range for a bottom of shape "
                             f"{tuple(x.shape)}")
        return axis

    def _param_shape(self, x: Tensor, scale: Tensor | None) -> tuple[int, ...]:
        if scale is not None:
            return tuple(scale.shape)
        axis = self._axis(x)
        end = x.dim() if self.num_axes == -1 else axis + self.num_axes
        if end > x.dim():
            raise ValueError(f"Scale: axis {self.axis} + num_axes {self.num_axes} exceeds the "
                             f"bottom's {x.dim()} axes (shape {tuple(x.shape)})")
        return tuple(x.shape[axis:end])

    def initialize_parameters(self, x: Tensor, scale: Tensor | None = None) -> None:  # type: ignore[override]
        """Create the blobs from the first call's shapes (LazyModuleMixin hook)."""
        if not self.has_uninitialized_params():
            return
        shape = self._param_shape(x, scale)
        with torch.no_grad():
            for p in (self.weight, self.bias):
                if isinstance(p, nn.UninitializedParameter):
                    p.materialize(shape)
            self.reset_parameters()

    def _broadcast(self, x: Tensor, s: Tensor) -> Tensor:
        if s.dim() == 0:
            return s
        axis = self._axis(x)
        if tuple(x.shape[axis:axis + s.dim()]) != tuple(s.shape):
            raise ValueError(f"Scale: scale blob of shape {tuple(s.shape)} does not match the "
                             f"bottom's shape {tuple(x.shape)} from axis {axis}")
        return s.reshape(tuple(s.shape) + (1,) * (x.dim() - axis - s.dim()))

    def forward(self, bottom: Tensor, scale: Tensor | None = None) -> Tensor:
        if not isinstance(bottom, Tensor) or not bottom.is_floating_point():
            raise ValueError("Scale: bottom must be a floating-point tensor")
        if (scale is None) != (self.num_bottoms == 1):
            raise ValueError(f"Scale: the layer was built for {self.num_bottoms} bottom(s) but "
                             f"got {1 if scale is None else 2}")
        s = scale if scale is not None else self.weight
        y = bottom * self._broadcast(bottom, s.to(bottom.dtype))
        if self.bias is not None:
            y = y + self._broadcast(bottom, self.bias.to(bottom.dtype))
        return y

    def extra_repr(self) -> str:
        return (f"axis={self.axis}, num_axes={self.num_axes}, bias_term={self.bias_term}, "
                f"num_bottoms={self.num_bottoms}, learnable={self.learnable}")
