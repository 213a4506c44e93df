"""Every shipped example config validates, and its head and backbone build."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from marginface.heads import list_heads
from marginface.train.builders import build_head, build_model
from marginface.train.config import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_there_is_a_config_per_head():
    names = {load_config(p).head.name for p in CONFIGS if "mobilefacenet_" in p.name}
    aliases = {"amsoftmax"}  # = cosface
    assert names == set(list_heads()) - aliases


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_builds(path):
    config = load_config(path)
    head = build_head(config.head, 16, 5)
    assert head.weight.shape == (5 * head.rows_per_class, 16)
    assert type(head).__name__.lower().startswith(config.head.name[:4])
    model = build_model(config.model)
    assert tuple(model.config.input_size) == tuple(config.model.input_size)
    loss = head.loss(torch.randn(4, 16), torch.tensor([0, 1, 2, 4]))
    assert torch.isfinite(loss)


def test_head_option_errors_name_the_key():
    # found when the config is loaded, before any dataset or model is built
    with pytest.raises(ValueError, match=r"head.options.m3: arcface does not take 'm3'"):
        load_config(None, ["train.max_steps=1", "head.name=arcface", "head.options={m3: 0.1}"])
    with pytest.raises(ValueError, match="head.scale: softmax does not take 'scale'"):
        load_config(None, ["train.max_steps=1", "head.name=softmax", "head.scale=3.0"])


@pytest.mark.parametrize("name,option,value", [
    ("sphereface2", "lambda_", 1.5), ("sphereface2", "t", 0.5),
    ("sphereface2", "margin_type", "B"), ("uniface", "lambda_", -1.0),
    ("uniface", "margin_type", "sphere"), ("uniface", "r", 0.0)])
def test_binary_head_option_values_are_checked_and_named(name, option, value):
    # refused when the config is loaded (the head checks its own options), naming the option
    with pytest.raises(ValueError, match=option):
        load_config(None, ["train.max_steps=1", f"head.name={name}",
                           f"head.options={{{option}: {value}}}"])

