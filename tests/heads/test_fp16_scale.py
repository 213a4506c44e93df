"""fp16_gradient_scale: the one power-of-two rule of the float16 backward products."""

from __future__ import annotations

import math

import torch

from marginface.heads.fp16_scale import FP16_SCALE_EXPONENT_LIMIT, fp16_gradient_scale


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
