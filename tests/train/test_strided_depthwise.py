"""The strided depthwise convolution with the zero-grid input gradient (train.strided_depthwise)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from marginface.models import create_model
from marginface.train.strided_depthwise import (
    StridedDepthwiseConv2d,
    is_strided_depthwise,
    strided_depthwise_conv2d,
    use_fast_strided_depthwise,
)


def test_only_strided_depthwise_convs_are_swapped():
    model = create_model("mobilefacenet", input_size=(112, 96), embedding_dim=128)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert use_fast_strided_depthwise(model) == 3
    swapped = [n for n, m in model.named_modules() if isinstance(m, StridedDepthwiseConv2d)]
    # MobileFaceNet's three stride-2 depthwise layers; the stride-1 ones and the 7x6 GDC stay
    assert swapped == ["blocks.0.depthwise.conv", "blocks.5.depthwise.conv",
                       "blocks.12.depthwise.conv"]
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert use_fast_strided_depthwise(model) == 0  # already swapped


@pytest.mark.parametrize("conv, expected", [
    (nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), True),
    (nn.Conv2d(8, 8, 3, stride=(1, 2), groups=8), True),
    (nn.Conv2d(8, 8, 3, stride=1, groups=8), False),   # stride 1: bf16 is fast
    (nn.Conv2d(8, 16, 3, stride=2, groups=8), False),  # a channel multiplier: not depthwise
    (nn.Conv2d(8, 8, 3, stride=2, groups=4), False),   # grouped, not depthwise
    (nn.Conv2d(1, 1, 3, stride=2), False),             # one channel, one group: dense
    (nn.Conv2d(8, 8, 3, stride=2, dilation=2, groups=8), False),
    (nn.Conv2d(8, 8, 3, stride=2, padding=3, groups=8), False),  # padding > kernel - 1
    (nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, padding_mode="reflect"), False),
])
def test_which_convs_count_as_strided_depthwise(conv, expected):
    assert is_strided_depthwise(conv) is expected


@settings(max_examples=40, deadline=None)
@given(channels=st.integers(1, 5), height=st.integers(1, 12), width=st.integers(1, 12),
       kh=st.integers(1, 5), kw=st.integers(1, 5), sh=st.integers(1, 4), sw=st.integers(1, 4),
       data=st.data(), seed=st.integers(0, 2**16))
def test_value_and_gradients_equal_conv2d(channels, height, width, kh, kw, sh, sw, data, seed):
    """float64, any kernel, stride and padding <= kernel - 1 the output size allows."""
    ph = data.draw(st.integers(0, kh - 1))
    pw = data.draw(st.integers(0, kw - 1))
    if height + 2 * ph < kh or width + 2 * pw < kw:
        return  # no output at all
    torch.manual_seed(seed)
    x = torch.randn(2, channels, height, width, dtype=torch.float64, requires_grad=True)
    w = torch.randn(channels, 1, kh, kw, dtype=torch.float64, requires_grad=True)
    b = torch.randn(channels, dtype=torch.float64, requires_grad=True)
    ref = F.conv2d(x, w, b, (sh, sw), (ph, pw), 1, channels)
    out = strided_depthwise_conv2d(x, w, b, (sh, sw), (ph, pw))
    torch.testing.assert_close(out, ref)
    grad = torch.randn_like(ref)
    for expected, got in zip(torch.autograd.grad(ref, (x, w, b), grad),
                             torch.autograd.grad(out, (x, w, b), grad), strict=True):
        torch.testing.assert_close(got, expected)


def test_gradcheck():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w, b: strided_depthwise_conv2d(x, w, b, (2, 2), (1, 1)), (x, w, b))


@pytest.mark.parametrize("channels_last", [False, True])
def test_bf16_autocast_matches_the_plain_layer(channels_last):
    """Under CPU bf16 autocast: same bf16 output as Conv2d, gradients within bf16 rounding."""
    torch.manual_seed(0)
    plain = nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16)
    fast = nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16)
    fast.load_state_dict(plain.state_dict())
    assert use_fast_strided_depthwise(fast) == 1
    x = torch.randn(4, 16, 14, 12)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    outs, grads = [], []
    for layer in (plain, fast):
        xi = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = layer(xi)
        outs.append(out)
        grads.append(torch.autograd.grad(out.float().square().sum(), [xi, *layer.parameters()]))
    assert outs[0].dtype == outs[1].dtype == torch.bfloat16
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=0)
    for a, b in zip(*grads, strict=True):
        assert b.dtype == a.dtype
        torch.testing.assert_close(b, a, rtol=2e-2, atol=2e-2)


def test_outside_bf16_autocast_it_is_conv2d_itself():
    torch.manual_seed(0)
    plain = nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4)
    fast = nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4)
    fast.load_state_dict(plain.state_dict())
    use_fast_strided_depthwise(fast)
    x = torch.randn(2, 4, 9, 8)
    torch.testing.assert_close(fast(x), plain(x), rtol=0, atol=0)


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
    assert isinstance(trainer.model.depthwise, StridedDepthwiseConv2d) is swapped
    assert type(trainer.model.stem) is nn.Conv2d
    summary = trainer.fit()
    assert summary.steps == 2 and torch.isfinite(torch.tensor(summary.final_loss))
