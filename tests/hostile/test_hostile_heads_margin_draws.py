"""Hostile head parameters for CurricularFace's one-pass negatives and ElasticFace+'s draws."""

from __future__ import annotations

import pytest
import torch

from marginface.heads import CurricularFace
from marginface.train.config import load_config


@pytest.mark.fault(kind="head parameters", fault="CurricularFace scale whose logits overflow "
                   "float32's exp (s = 1000)",
                   behaviour="finite loss and gradients equal to float64 (block recomputed "
                   "with its own max)")
def test_curricular_huge_scale_stays_finite_and_exact():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 8, generator=gen)
    w = torch.randn(40, 8, generator=gen)
    y = torch.randint(0, 40, (6,), generator=gen)
    out = {}
    for dtype in (torch.float32, torch.float64):
        head = CurricularFace(8, 40, scale=1000.0, t=0.5, block_size=8).to(dtype).eval()
        with torch.no_grad():
            head.weight.copy_(w)
        xi = x.to(dtype).requires_grad_()
        loss = head.loss(xi, y)
        out[dtype] = (loss, *torch.autograd.grad(loss, (xi, head.weight)))
    for a, b in zip(out[torch.float32], out[torch.float64], strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a.double(), b, rtol=1e-3,
                                   atol=1e-3 * float(b.detach().abs().max()))


@pytest.mark.fault(kind="config (YAML)", fault="ElasticFace+ head with a negative std",
                   behaviour="refused at config load, naming head.options.std and the value")
def test_elastic_plus_negative_std_is_named():
    # the head checks its options when the config is loaded
    with pytest.raises(ValueError, match=r"head\.options\.std: elasticface_cos_plus: std .*-0\.02"):
        load_config(None, ["train.max_steps=1", "head.name=elasticface_cos_plus",
                           "head.options={std: -0.02}"])
