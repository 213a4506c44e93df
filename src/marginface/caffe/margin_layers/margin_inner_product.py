"""Caffe ``MarginInnerProduct`` (SphereFace / A-Softmax, Liu et al. CVPR 2017; wy1iu/sphereface).

Weight ``(num_output, K)``, no bias; rows L2-normalised (no epsilon), features not.
Each forward: ``iteration += 1``, ``lambda = max(base*(1 + gamma*iteration)^(-power), lambda_min)``;
``cos = x W^T / |x|``; target ``psi(theta_y) = (-1)^k cos(m theta_y) - 2k`` computed as Caffe does,
from the Chebyshev polynomial of ``cos`` and sign tests (k = floor(m theta / pi)); outputs
``z_y = (|x| psi + lambda x.W_y) / (1 + lambda)``, ``z_j = x.W_j`` (type SINGLE: plain ``x W^T``).
The second output is lambda, shape (1,).

Phase and state: the margin applies in both phases (as in Caffe). Like Caffe in its TRAIN net, a
training-mode forward writes the normalised rows back into ``weight`` (no_grad) and advances
``iteration`` (a buffer, saved in the state_dict); an eval-mode forward uses lambda at
``iteration + 1`` and changes nothing (Caffe's separate TEST net keeps its own counter).

A zero input row (NaN in Caffe) gives zero logits; a zero weight row gives cos = 0.

Gradient: autograd's true derivative of this forward (through the row normalisation, ``|x|`` and
psi). Caffe's backward differs: the weight gets the plain GEMM gradient (projected SGD) and the
input gradient of the target uses a renormalised (coeff_w, coeff_x) direction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.lazy import LazyModuleMixin

from marginface.caffe.fillers import fill
from marginface.caffe.margin_layers._common import check_finite, check_tops, label_vector
from marginface.functional import sphereface_lambda, sphereface_target

__all__ = ["MarginInnerProduct", "MARGIN_TYPES", "sphereface_psi_chebyshev"]

MARGIN_TYPES = {"SINGLE": 1, "DOUBLE": 2, "TRIPLE": 3, "QUADRUPLE": 4}


def sphereface_psi_chebyshev(cos: Tensor, m: int) -> Tensor:
    """``psi(theta)`` for integer m in 1..4 from ``cos(theta)`` by Caffe's sign formulas."""
    c = cos
    s0 = torch.sign(c).detach()
    if m == 1:
        return c
    if m == 2:
        return 2.0 * s0 * c * c - 1.0
    if m == 3:
        s1 = torch.sign(c.abs() - 0.5).detach()
        s2 = s0 * (1.0 + s1) - 2.0
        return s1 * (4.0 * c ** 3 - 3.0 * c) + s2
    if m == 4:
        s3 = (s0 * torch.sign(2.0 * c * c - 1.0)).detach()
        s4 = 2.0 * s0 + s3 - 3.0
        return s3 * (8.0 * c ** 4 - 8.0 * c * c + 1.0) + s4
    raise ValueError(f"m must be an integer in 1..4, got {m!r}")


class MarginInnerProduct(LazyModuleMixin, nn.Module):
    """SphereFace's A-Softmax layer; ``forward(x, label)`` returns ``(logits, lambda)``."""

    def __init__(self, num_output: int, in_features: int | None = None, *,
                 type: str | int = "SINGLE", base: float = 1.0, gamma: float = 0.0,
                 power: float = 1.0, lambda_min: float = 0.0, iteration: int = 0,
                 axis: int = 1, weight_filler: Mapping[str, Any] | None = None,
                 num_tops: int = 2) -> None:
        super().__init__()
        if not (isinstance(num_output, int) and num_output > 0):
            raise ValueError(f"MarginInnerProduct: num_output must be a positive integer, "
                             f"got {num_output!r}")
        if isinstance(type, str):
            if type not in MARGIN_TYPES:
                raise ValueError(f"MarginInnerProduct: type must be one of "
                                 f"{list(MARGIN_TYPES)}, got {type!r}")
            self.m = MARGIN_TYPES[type]
        elif isinstance(type, int) and 1 <= type <= 4:
            self.m = type
        else:
            raise ValueError(f"MarginInnerProduct: type must be SINGLE..QUADRUPLE or 1..4, "
                             f"got {type!r}")
        check_finite("MarginInnerProduct", base=base, gamma=gamma, power=power,
                     lambda_min=lambda_min)
        if not (isinstance(iteration, int) and iteration >= 0):
            raise ValueError(f"MarginInnerProduct: iteration must be an integer >= 0, "
                             f"got {iteration!r}")
        if axis != 1:
            raise ValueError(f"MarginInnerProduct: only axis 1 is supported, got {axis!r}")
        self.num_output = num_output
        self.base, self.gamma, self.power = float(base), float(gamma), float(power)
        self.lambda_min = float(lambda_min)
        self.axis = axis
        self.weight_filler = dict(weight_filler or {})
        self.num_tops = check_tops("MarginInnerProduct", num_tops, (1, 2))
        self.in_features = in_features
        self.register_buffer("iteration", torch.tensor(int(iteration), dtype=torch.long))
        if in_features is None:
            self.weight = nn.UninitializedParameter()
        else:
            self.weight = nn.Parameter(torch.empty(num_output, in_features))
            fill(self.weight, self.weight_filler, where="MarginInnerProduct weight")

    @property
    def blob_names(self) -> list[str]:
        """Parameter names in Caffe's blob order."""
        return ["weight"]

    @property
    def type(self) -> str:
        return next(k for k, v in MARGIN_TYPES.items() if v == self.m)

    def initialize_parameters(self, bottom: Tensor, label: Tensor | None = None) -> None:  # type: ignore[override]
        if self.has_uninitialized_params():
            with torch.no_grad():
                self.in_features = bottom.flatten(1).shape[1]
                self.weight.materialize((self.num_output, self.in_features))
                fill(self.weight, self.weight_filler, where="MarginInnerProduct weight")

    def _lazy_load_hook(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        super()._lazy_load_hook(state_dict, prefix, *args, **kwargs)
        if not isinstance(self.weight, nn.UninitializedParameter):
            self.in_features = self.weight.shape[1]

    def lambda_at(self, iteration: int) -> float:
        """``max(base * (1 + gamma*iteration)^(-power), lambda_min)``."""
        return sphereface_lambda(iteration, base=self.base, gamma=self.gamma, power=self.power,
                                 lambda_min=self.lambda_min)

    def forward(self, bottom: Tensor, label: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        if not isinstance(bottom, Tensor) or not bottom.is_floating_point() or bottom.dim() < 2:
            raise ValueError("MarginInnerProduct: bottom must be a floating tensor (N, K, ...)")
        x = bottom.flatten(1)
        if x.shape[1] != self.in_features:
            raise ValueError(f"MarginInnerProduct: bottom has {x.shape[1]} inputs per sample but "
                             f"the weight expects {self.in_features}")
        labels = label_vector(label, x.shape[0], self.num_output, "MarginInnerProduct")
        step = int(self.iteration) + 1
        lam = self.lambda_at(step)
        # clone: the in-place write below must not touch a tensor autograd saved
        w = self.weight.clone()
        # a zero row (NaN in Caffe) stays zero: the clamp only acts on an all-zero row
        w = w / torch.sqrt((w * w).sum(dim=1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny))
        if self.training:
            self.iteration += 1
            with torch.no_grad():
                self.weight.copy_(w)
        w = w.to(x.dtype)
        xw = F.linear(x, w)
        if self.m == 1:
            out = xw
        else:
            # vector_norm's derivative at x = 0 is 0 (not NaN); a zero row gives zero logits
            x_norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
            index = labels.unsqueeze(1)
            cos_y = xw.gather(1, index) / x_norm.clamp_min(torch.finfo(x.dtype).tiny)
            psi = sphereface_psi_chebyshev(cos_y, self.m)
            # (lambda*xw + z)/(1 + lambda), z = |x| psi at the target and xw elsewhere
            out = sphereface_target(xw, xw.scatter(1, index, x_norm * psi), lam)
        if self.num_tops == 2:
            return out, torch.full((1,), lam, dtype=x.dtype, device=x.device)
        return out

    def extra_repr(self) -> str:
        return (f"num_output={self.num_output}, in_features={self.in_features}, "
                f"type={self.type}, base={self.base}, gamma={self.gamma}, power={self.power}, "
                f"lambda_min={self.lambda_min}")
