"""precision_linear: the product in a chosen dtype; float16 backward never overflows."""

from __future__ import annotations

import pytest
import torch
from heads_cases import single_thread  # noqa: F401  (autouse fixture)

from marginface.heads.precision_matmul import precision_linear


@pytest.mark.parametrize("grad_scale", [1e-9, 1.0, 1e6])
@pytest.mark.parametrize("matmul_dtype", [torch.float16, torch.bfloat16])
def test_low_precision_gradients_track_float32_at_any_magnitude(matmul_dtype, grad_scale):
    x = torch.randn(16, 8)
    w = torch.nn.functional.normalize(torch.randn(12, 8), dim=1)
    g = torch.randn(16, 12) * grad_scale
    grads = {}
    for dtype in (torch.float32, matmul_dtype):
        xi, wi = x.clone().requires_grad_(), w.clone().requires_grad_()
        out = precision_linear(xi, wi, None, dtype)
        assert out.dtype == torch.float32
        out.backward(g)
        grads[dtype] = (xi.grad, wi.grad)
    rtol = 2e-3 if matmul_dtype == torch.float16 else 2e-2
    for low, ref in zip(grads[matmul_dtype], grads[torch.float32], strict=True):
        assert torch.isfinite(low).all()
        assert float((low - ref).abs().max()) <= rtol * float(ref.abs().max())
    if matmul_dtype == torch.float16 and grad_scale == 1e6:
        # without the power-of-two scaling these gradients are inf in float16
        assert not torch.isfinite(g.half() @ w.half()).all()


def test_bias_is_added_in_the_output_dtype_and_autocast_is_ignored():
    x, w, b = torch.randn(3, 4), torch.randn(5, 4), torch.randn(5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = precision_linear(x, w, b, torch.float32)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, x @ w.T + b)
    out64 = precision_linear(x.double(), w.double(), b.double(), torch.float16)
    assert out64.dtype == torch.float64  # float64 inputs keep float64 whatever matmul_dtype says
    torch.testing.assert_close(out64, (x @ w.T + b).double(), rtol=1e-6, atol=1e-6)


def test_one_table_of_matmul_dtypes_for_heads_and_fused_loss():
    from marginface import heads
    from marginface.heads import fused, matmul, precision_matmul

    assert heads.MATMUL_DTYPES is precision_matmul.MATMUL_DTYPES is matmul.MATMUL_DTYPES
    assert matmul.precision_linear is precision_matmul.precision_linear  # the old path works
    x, w, y = torch.randn(3, 4), torch.randn(5, 4), torch.tensor([0, 1, 2])
    for build in (lambda: heads.ArcFace(4, 5, matmul_dtype=torch.int8),
                  lambda: fused.fused_margin_cross_entropy(x, w, y, scale=8.0,
                                                           matmul_dtype=torch.int8)):
        with pytest.raises(ValueError, match=r"matmul_dtype must be one of .*torch.int8"):
            build()
