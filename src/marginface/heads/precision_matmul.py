"""The heads' matrix product in a chosen precision, independent of the ambient autocast.

``MATMUL_DTYPES`` lists the precisions every head and the fused loss accept.

``precision_linear(x, w, bias, matmul_dtype)`` returns ``x @ w.T (+ bias)`` in x's dtype with the
product computed in ``matmul_dtype``. float16 has a small range (max 65504), and the exact
margin gradients ``d target / d cos`` reach ``s * m1 / sin(delta)`` near theta = 0 or pi (about
10^5 for s = 64 and ArcFace), so for float16 the backward pass scales the incoming gradient by a
power of two before the cast (dynamic, per call, no host sync) and unscales after: the result is
the float16 product of the same gradient, never inf. bfloat16 shares float32's range and needs no
scaling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from marginface.heads.fp16_scale import fp16_gradient_scale

__all__ = ["MATMUL_DTYPES", "check_matmul_dtype", "precision_linear"]

# The dtypes the heads and the fused loss run their class products in (one table for both).
MATMUL_DTYPES: tuple[torch.dtype, ...] = (
    torch.float32,
    torch.bfloat16,
    torch.float16,
    torch.float64,
)


def check_matmul_dtype(matmul_dtype: torch.dtype) -> torch.dtype:
    """``matmul_dtype`` itself if it is one of ``MATMUL_DTYPES``, else a ValueError naming it."""
    if matmul_dtype not in MATMUL_DTYPES:
        raise ValueError(
            f"matmul_dtype must be one of {[str(d) for d in MATMUL_DTYPES]}, "
            f"got {matmul_dtype!r}"
        )
    return matmul_dtype


class _Float16Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor) -> Tensor:  # type: ignore[override]
        x16, w16 = x.to(torch.float16), w.to(torch.float16)
        ctx.save_for_backward(x16, w16)
        ctx.dtypes = (x.dtype, w.dtype)
        return F.linear(x16, w16).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x16, w16 = ctx.saved_tensors
        x_dtype, w_dtype = ctx.dtypes
        with torch.autocast(device_type=grad.device.type, enabled=False):
            g = grad.float()
            scale = fp16_gradient_scale(g, x16, w16)
            g16 = (g * scale).to(torch.float16)
            grad_x = grad_w = None
            if ctx.needs_input_grad[0]:
                grad_x = ((g16 @ w16).float() / scale).to(x_dtype)
            if ctx.needs_input_grad[1]:
                grad_w = ((g16.t() @ x16).float() / scale).to(w_dtype)
        return grad_x, grad_w


def precision_linear(
    x: Tensor, w: Tensor, bias: Tensor | None, matmul_dtype: torch.dtype
) -> Tensor:
    """``x @ w.T (+ bias)`` with the product in ``matmul_dtype`` (float64 inputs stay float64).

    Autocast is switched off for the product; the result and the bias addition are in x's dtype.
    """
    out_dtype = x.dtype
    mm_dtype = torch.float64 if out_dtype == torch.float64 else matmul_dtype
    with torch.autocast(device_type=x.device.type, enabled=False):
        if mm_dtype == torch.float16:
            out = _Float16Linear.apply(x, w)
        else:
            out = F.linear(x.to(mm_dtype), w.to(mm_dtype)).to(out_dtype)
        if bias is not None:
            out = out + bias.to(out_dtype)
    return out
