"""fp16_gradient_scale: the one power-of-two rule of the float16 backward products."""

from __future__ import annotations

import math

import torch

from marginface.heads.fp16_scale import FP16_SCALE_EXPONENT_LIMIT, fp16_gradient_scale
from marginface.heads.matmul import precision_linear


def test_scale_is_a_power_of_two_bounding_both_products():
    torch.manual_seed(0)
    g = torch.randn(8, 50) * 1e5  # margin gradients near theta = 0 reach ~1e5
    x, w = torch.randn(8, 16), torch.randn(50, 16)
    scale = float(fp16_gradient_scale(g, x, w))
    assert math.log2(scale) == int(math.log2(scale))
    g16 = (g * scale).half()
    assert torch.isfinite(g16.float() @ w).all() and torch.isfinite(g16.float().t() @ x).all()
    assert (g16.float() @ w.half().float()).abs().max() < 2.0**14
    assert ((g16 @ w.half()).float() / scale).isfinite().all()


def test_clamp_keeps_scale_and_inverse_normal_float32():
    x, w = torch.ones(2, 3), torch.ones(4, 3)
    tiny = fp16_gradient_scale(torch.full((2, 4), 1e-44), x, w)
    huge = fp16_gradient_scale(torch.full((2, 4), 1e37), x, w)
    assert float(tiny) == 2.0**FP16_SCALE_EXPONENT_LIMIT
    assert float(huge) >= 2.0**-FP16_SCALE_EXPONENT_LIMIT
    assert torch.isfinite(1.0 / tiny) and float(1.0 / huge) > 0


def test_empty_gradient_scale_is_one():
    assert float(fp16_gradient_scale(torch.empty(0, 4), torch.empty(0, 3), torch.ones(4, 3))) == 1


def test_the_cast_gradient_itself_stays_finite_with_unit_norm_rows():
    # unit-norm rows in 512-d: every |x|, |w| < 1/4, so the products' bound alone under-estimates
    # the gradient's own entries; a target gradient of 8e4 then overflowed the float16 cast
    torch.manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(8, 512), dim=1)
    w = torch.nn.functional.normalize(torch.randn(100, 512), dim=1)
    g = torch.zeros(8, 100)
    g[torch.arange(8), torch.arange(8)] = -8e4
    scale = fp16_gradient_scale(g, x, w)
    assert torch.isfinite((g * scale).half()).all()
    xi, wi = x.clone().requires_grad_(), w.clone().requires_grad_()
    precision_linear(xi, wi, None, torch.float16).backward(g)
    torch.testing.assert_close(xi.grad, g @ w, rtol=2e-3, atol=1.0)
    torch.testing.assert_close(wi.grad, g.t() @ x, rtol=2e-3, atol=1.0)
