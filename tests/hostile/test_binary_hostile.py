"""Hostile inputs to the binary heads (SphereFace2, UniFace): each fault named, nothing computed."""

from __future__ import annotations

import pytest
import torch

from marginface.heads import SphereFace2, UniFace
from marginface.train.config import load_config


@pytest.mark.fault(kind="config (YAML)", fault="binary head option out of range",
                   behaviour="refused at config load: head.options.KEY, the head and the value")
@pytest.mark.parametrize("name,option,value", [("sphereface2", "lambda_", 1.0),
                                               ("sphereface2", "margin_type", "Z"),
                                               ("uniface", "r", -2.0)])
def test_binary_head_option_out_of_range_is_named(name, option, value):
    # the head checks its options when the config is loaded, before any data or model
    with pytest.raises(ValueError, match=rf"head\.options\.{option}: {name}: {option} .*{value}"):
        load_config(None, ["train.max_steps=1", f"head.name={name}",
                           f"head.options={{{option}: {value}}}"])


@pytest.mark.fault(kind="head state", fault="binary head's bias NaN or inf (diverged run)",
                   behaviour="ValueError naming the bias before any loss is computed")
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_bias_is_named(value):
    head = UniFace(8, 4)
    with torch.no_grad():
        head.bias.fill_(value)
    with pytest.raises(ValueError, match="bias must be finite"):
        head.loss(torch.randn(3, 8), torch.tensor([0, 1, 2]))


@pytest.mark.fault(kind="head call", fault="per-class bias given to a binary head",
                   behaviour="ValueError: the head carries its own one-number bias")
def test_per_class_bias_is_refused():
    head = SphereFace2(8, 4)
    x, y = torch.randn(3, 8), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="bias must be None for a binary head"):
        head.fused_loss(x, head.weight, y, y, bias=torch.zeros(4))
