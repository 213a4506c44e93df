"""Strided depthwise convolutions kept fp32 in a bf16 CPU step (train.fp32_depthwise)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from marginface.models import create_model
from marginface.train.fp32_depthwise import (
    Fp32Conv2d,
    is_strided_depthwise,
    keep_strided_depthwise_fp32,
)


def test_only_strided_depthwise_convs_are_swapped():
    model = create_model("mobilefacenet", input_size=(112, 96), embedding_dim=128)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert keep_strided_depthwise_fp32(model) == 3
    swapped = [n for n, m in model.named_modules() if isinstance(m, Fp32Conv2d)]
    # MobileFaceNet's three stride-2 depthwise layers; the stride-1 ones and the 7x6 GDC stay
    assert swapped == ["blocks.0.depthwise.conv", "blocks.5.depthwise.conv",
                       "blocks.12.depthwise.conv"]
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert keep_strided_depthwise_fp32(model) == 0  # already swapped


@pytest.mark.parametrize("conv, expected", [
    (nn.Conv2d(8, 8, 3, stride=2, groups=8), True),
    (nn.Conv2d(8, 8, 3, stride=(1, 2), groups=8), True),
    (nn.Conv2d(8, 8, 3, stride=1, groups=8), False),   # stride 1: bf16 is fast
    (nn.Conv2d(8, 16, 3, stride=2, groups=8), False),  # a channel multiplier: not depthwise
    (nn.Conv2d(8, 8, 3, stride=2, groups=4), False),   # grouped, not depthwise
    (nn.Conv2d(1, 1, 3, stride=2), False),             # one channel, one group: dense
])
def test_which_convs_count_as_strided_depthwise(conv, expected):
    assert is_strided_depthwise(conv) is expected


def test_the_swap_keeps_the_layer_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16)
    plain = nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16)
    plain.load_state_dict(conv.state_dict())
    keep_strided_depthwise_fp32(conv)
    x = torch.randn(4, 16, 14, 12).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, out_plain = conv(x), plain(x)
    assert out_plain.dtype == torch.bfloat16 and out.dtype == torch.float32
    torch.testing.assert_close(out, F.conv2d(x.float(), conv.weight, conv.bias, 2, 1, 1, 16))


@settings(max_examples=20, deadline=None)
@given(channels=st.integers(1, 6), height=st.integers(3, 11), width=st.integers(3, 11),
       stride=st.integers(2, 3), seed=st.integers(0, 2**16))
def test_fp32_outputs_and_gradients_equal_the_plain_conv(channels, height, width, stride, seed):
    """Outside autocast the swapped layer is the same function as the plain one."""
    torch.manual_seed(seed)
    plain = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, groups=channels)
    swapped = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, groups=channels)
    swapped.load_state_dict(plain.state_dict())
    keep_strided_depthwise_fp32(swapped)
    x = torch.randn(2, channels, height, width, requires_grad=True)
    a, b = plain(x), swapped(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    ga = torch.autograd.grad(a.square().sum(), [x, *plain.parameters()])
    gb = torch.autograd.grad(b.square().sum(), [x, *swapped.parameters()])
    for u, v in zip(ga, gb, strict=True):
        torch.testing.assert_close(u, v, rtol=0, atol=0)


def test_gradcheck_of_the_fp32_layer():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 3, 3, stride=2, padding=1, groups=3).double()
    keep_strided_depthwise_fp32(conv)
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    weight = conv.weight.detach().clone().requires_grad_()
    bias = conv.bias.detach().clone().requires_grad_()

    def layer(x, weight, bias):
        return torch.func.functional_call(conv, {"weight": weight, "bias": bias}, (x,))

    assert torch.autograd.gradcheck(layer, (x, weight, bias))


class _DepthwiseNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.depthwise = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
        self.fc = nn.Linear(8, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.depthwise(self.stem(x)).mean(dim=(2, 3)))


@pytest.mark.parametrize("precision, swapped", [("bf16", True), ("fp32", False)])
def test_the_trainer_swaps_for_bf16_on_cpu_only(tmp_path, precision, swapped):
    from train_helpers import TinyCosFace

    from marginface.train.config import load_config
    from marginface.train.engine import Trainer

    config = load_config(None, [
        "model.input_size=[32, 32]", "data.synthetic.num_identities=8",
        "data.synthetic.images_per_identity=4", "train.batch_size=16", "train.max_steps=2",
        "train.progress=false", "train.checkpoint_interval=0", "eval.sets=[]",
        f"train.precision={precision}"])
    trainer = Trainer(config, tmp_path, model=_DepthwiseNet(), head=TinyCosFace(16, 8))
    assert isinstance(trainer.model.depthwise, Fp32Conv2d) is swapped
    assert type(trainer.model.stem) is nn.Conv2d
    summary = trainer.fit()
    assert summary.steps == 2 and torch.isfinite(torch.tensor(summary.final_loss))
