"""LR schedules at known steps, and the optimizer's decay groups."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from marginface.train.optim import build_optimizer, split_decay_groups
from marginface.train.schedule import StepScheduler, lr_factor


def test_warmup_then_poly():
    kw = dict(name="poly", total_steps=110, warmup_steps=10, power=1.0)
    assert lr_factor(0, **kw) == 0.0
    assert lr_factor(5, **kw) == pytest.approx(0.5)
    assert lr_factor(10, **kw) == pytest.approx(1.0)
    assert lr_factor(60, **kw) == pytest.approx(0.5)
    assert lr_factor(110, **kw) == pytest.approx(0.0)
    assert lr_factor(35, name="poly", total_steps=110, warmup_steps=10, power=2.0) == \
        pytest.approx(0.75**2)


def test_cosine_multistep_constant():
    assert lr_factor(0, name="cosine", total_steps=100) == pytest.approx(1.0)
    assert lr_factor(50, name="cosine", total_steps=100) == pytest.approx(0.5)
    assert lr_factor(25, name="cosine", total_steps=100) == pytest.approx(
        0.5 * (1 + math.cos(math.pi / 4)))
    ms = dict(name="multistep", total_steps=100, milestones=[30, 60], gamma=0.1)
    assert [lr_factor(s, **ms) for s in (0, 29, 30, 59, 60, 99)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01])
    assert lr_factor(3, name="constant", total_steps=10, warmup_steps=4,
                     warmup_start_factor=0.2) == pytest.approx(0.2 + 0.8 * 3 / 4)
    with pytest.raises(ValueError, match="schedule name"):
        lr_factor(20, name="exp", total_steps=100)


def test_scheduler_steps_every_group_and_restores():
    p1, p2 = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    o1 = torch.optim.SGD([p1], lr=0.1)
    o2 = torch.optim.SGD([p2], lr=0.01)
    sched = StepScheduler([o1, o2], name="poly", total_steps=10, warmup_steps=2, min_lr=0.0)
    assert sched.get_last_lr() == [0.0, 0.0]
    for _ in range(6):
        sched.step()
    assert sched.get_last_lr() == pytest.approx([0.1 * 0.5, 0.01 * 0.5])
    state = sched.state_dict()
    o3 = torch.optim.SGD([p1], lr=0.1)
    again = StepScheduler([o3], name="poly", total_steps=10, warmup_steps=2)
    again.load_state_dict(state)
    assert again.get_last_lr() == pytest.approx([0.05])


def test_no_decay_on_bn_prelu_bias():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.PReLU(4), nn.Flatten(),
                        nn.Linear(4, 2))
    groups = split_decay_groups(net, 5e-4)
    decayed = {id(p) for p in groups[0]["params"]}
    assert groups[0]["weight_decay"] == 5e-4 and groups[1]["weight_decay"] == 0.0
    assert decayed == {id(net[0].weight), id(net[4].weight)}
    assert len(groups[1]["params"]) == 5  # conv bias, BN weight+bias, PReLU, linear bias
    everything = split_decay_groups(net, 5e-4, decay_norm_and_bias=True)
    assert len(everything) == 1 and len(everything[0]["params"]) == 7
    assert isinstance(build_optimizer(groups, name="adamw", lr=1e-3), torch.optim.AdamW)
    with pytest.raises(ValueError, match="optimizer name"):
        build_optimizer(groups, name="lion", lr=1e-3)
