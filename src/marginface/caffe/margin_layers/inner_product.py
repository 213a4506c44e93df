"""Caffe ``InnerProduct``, with the ``normalize`` field of the NormFace / AM-Softmax forks.

``y = x W^T + b`` over the axes from ``axis`` on (flattened), weight ``(num_output, K)`` (Caffe's
blob 0; ``(K, num_output)`` with ``transpose: true``), bias ``(num_output,)`` (blob 1).

``normalize: true`` (no bias in the seed's nets): every forward Caffe rescales each weight row in
place, ``W_j <- W_j / sqrt(|W_j|^2 + 1e-6)``, then computes ``y = x W^T``. Here the value is the
same. In training mode the rescaled rows are also written back into ``weight`` (under no_grad),
as Caffe does, so the stored state evolves as in Caffe; in eval mode nothing is written. The
gradient is the true derivative of ``x N(W)^T`` in the weight the forward received (through the
normalisation), where Caffe's own backward is the plain GEMM gradient ``dy^T x`` (projected SGD).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.lazy import LazyModuleMixin

from marginface.caffe.fillers import fill

__all__ = ["InnerProduct", "WEIGHT_NORM_EPS", "caffe_normalize_rows"]

#: The constant Caffe's normalised InnerProduct adds to each row's sum of squares.
WEIGHT_NORM_EPS = 1e-6


def caffe_normalize_rows(weight: Tensor, eps: float = WEIGHT_NORM_EPS) -> Tensor:
    """``W_j / sqrt(|W_j|^2 + eps)`` for every row j (differentiable, not in place)."""
    return weight / torch.sqrt((weight * weight).sum(dim=1, keepdim=True) + eps)


class InnerProduct(LazyModuleMixin, nn.Module):
    """Caffe's fully connected layer; ``normalize=True`` gives cos(theta) for unit inputs.

    ``in_features=None`` creates the weight at the first call (or from a loaded state_dict).
    """

    def __init__(self, num_output: int, in_features: int | None = None, *,
                 bias_term: bool = True, normalize: bool = False, axis: int = 1,
                 transpose: bool = False, weight_filler: Mapping[str, Any] | None = None,
                 bias_filler: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        if not (isinstance(num_output, int) and num_output > 0):
            raise ValueError(f"InnerProduct: num_output must be a positive integer, "
                             f"got {num_output!r}")
        if in_features is not None and not (isinstance(in_features, int) and in_features > 0):
            raise ValueError(f"InnerProduct: in_features must be a positive integer, "
                             f"got {in_features!r}")
        if normalize and transpose:
            raise ValueError("InnerProduct: normalize with transpose is not supported "
                             "(Caffe normalises num_output rows of length K)")
        self.num_output = num_output
        self.bias_term = bool(bias_term)
        self.normalize = bool(normalize)
        self.axis = int(axis)
        self.transpose = bool(transpose)
        self.weight_filler = dict(weight_filler or {})
        self.bias_filler = dict(bias_filler or {})
        self.in_features = in_features
        if in_features is None:
            self.weight = nn.UninitializedParameter()
        else:
            self.weight = nn.Parameter(torch.empty(self._weight_shape(in_features)))
        self.bias = nn.Parameter(torch.empty(num_output)) if self.bias_term else None
        if in_features is not None:
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """Fill the blobs with the layer's fillers (Caffe default: constant 0)."""
        if self.has_uninitialized_params():
            return
        fill(self.weight, self.weight_filler, where="InnerProduct weight")
        if self.bias is not None:
            fill(self.bias, self.bias_filler, where="InnerProduct bias")

    @property
    def blob_names(self) -> list[str]:
        """Parameter names in Caffe's blob order."""
        return ["weight", "bias"] if self.bias_term else ["weight"]

    def _weight_shape(self, k: int) -> tuple[int, int]:
        return (k, self.num_output) if self.transpose else (self.num_output, k)

    def initialize_parameters(self, bottom: Tensor) -> None:  # type: ignore[override]
        """Create the weight from the first bottom's shape (LazyModuleMixin hook)."""
        if not self.has_uninitialized_params():
            return
        with torch.no_grad():
            k = self._flatten(bottom).shape[-1]
            self.in_features = k
            self.weight.materialize(self._weight_shape(k))
            self.reset_parameters()

    def _lazy_load_hook(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        super()._lazy_load_hook(state_dict, prefix, *args, **kwargs)
        if not isinstance(self.weight, nn.UninitializedParameter):
            self.in_features = self.weight.shape[0 if self.transpose else 1]

    def _flatten(self, bottom: Tensor) -> Tensor:
        if not isinstance(bottom, Tensor) or not bottom.is_floating_point():
            raise ValueError("InnerProduct: bottom must be a floating-point tensor")
        axis = self.axis if self.axis >= 0 else bottom.dim() + self.axis
        if not 0 <= axis < bottom.dim():
            raise ValueError(f"InnerProduct: axis {self.axis} is out of range for a bottom of "
                             f"shape {tuple(bottom.shape)}")
        return bottom.flatten(axis) if axis > 0 else bottom.reshape(1, -1)

    def forward(self, bottom: Tensor) -> Tensor:
        x = self._flatten(bottom)
        axis = self.axis if self.axis >= 0 else bottom.dim() + self.axis
        k = x.shape[-1]
        if self.in_features != k:
            raise ValueError(f"InnerProduct: bottom has {k} inputs per sample (shape "
                             f"{tuple(bottom.shape)}, axis {self.axis}) but the weight expects "
                             f"{self.in_features}")
        weight = self.weight.t() if self.transpose else self.weight
        if self.normalize:
            # clone: the in-place write below must not touch a tensor autograd saved
            weight = caffe_normalize_rows(weight.clone())
            if self.training:
                with torch.no_grad():
                    self.weight.copy_(weight)
        y = F.linear(x, weight.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))
        return y.reshape(*bottom.shape[:axis], self.num_output) if axis > 0 else y.reshape(-1)

    def extra_repr(self) -> str:
        return (f"num_output={self.num_output}, in_features={self.in_features}, "
                f"bias_term={self.bias_term}, normalize={self.normalize}, axis={self.axis}, "
                f"transpose={self.transpose}")
