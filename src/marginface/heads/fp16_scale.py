"""The power-of-two gradient scale for float16 products (one rule for every head's backward).

A float16 backward computes ``g @ w`` and ``g.T @ x`` with ``g`` cast to float16 (max 65504).
Exact margin gradients near theta = 0 or pi reach ~10^5, so ``g`` is multiplied by a power of two
before the cast and the products are divided by it after (in float32). A power of two makes the
scaling exact: only the float16 rounding of ``g`` itself remains.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["FP16_TARGET_EXPONENT", "FP16_SCALE_EXPONENT_LIMIT", "fp16_gradient_scale"]

#: The bound on every product entry is mapped to 2^14, below float16's max (65504, about 2^16).
FP16_TARGET_EXPONENT = 14.0
#: The exponent is clamped to +-120 so that both the scale and 1/scale are normal float32 numbers
#: (float32's normal range is 2^-126 .. 2^128, and the scale is applied in float32). The lower end
#: never binds for a finite float32 bound (< 2^128 gives an exponent > -114); the upper end binds
#: only for bounds below 2^-106. A narrower clamp such as +-60 leaves bounds above ~2^76
#: overflowing to inf in float16 and under-scales bounds below 2^-46 (small gradient entries then
#: sink into float16's subnormals or to zero).
FP16_SCALE_EXPONENT_LIMIT = 120.0


def fp16_gradient_scale(grad: Tensor, x: Tensor, w: Tensor) -> Tensor:
    """A 0-d float32 power of two keeping ``grad @ w`` and ``grad.T @ x`` below 2^14 in float16.

    Each product entry is bounded by the largest row (column) L1 norm of ``grad`` times the
    largest ``|w|`` (``|x|``); the largest ``|grad|`` bounds the cast ``grad * scale`` itself
    (with unit-norm rows every ``|x|``, ``|w|`` can be below 1/4, and then a product bound of
    2^14 alone let the float16 gradient reach inf). Computed on the device: no host sync.
    """
    if grad.numel() == 0:
        return torch.ones((), dtype=torch.float32, device=grad.device)
    a = grad.abs()
    bound_x = a.sum(dim=1).amax().float() * w.abs().amax().float()
    bound_w = a.sum(dim=0).amax().float() * x.abs().amax().float()
    bound = torch.maximum(torch.maximum(bound_x, bound_w), a.amax().float())
    bound = bound.clamp_min(torch.finfo(torch.float32).tiny)
    exponent = torch.floor(FP16_TARGET_EXPONENT - torch.log2(bound))
    return torch.exp2(exponent.clamp(-FP16_SCALE_EXPONENT_LIMIT, FP16_SCALE_EXPONENT_LIMIT))
