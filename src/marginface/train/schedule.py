"""Learning-rate schedules stepped per iteration: linear warm-up, then poly, cosine or multistep.

With ``w`` warm-up steps, base rate ``lr0`` and total ``T`` steps, the factor at step ``t`` is

- warm-up (``t < w``): ``a + (1 - a) * t / w`` with start factor ``a``;
- poly: ``(1 - (t - w) / (T - w)) ** power`` (insightface arcface_torch's default: power 1);
- cosine: ``0.5 * (1 + cos(pi * (t - w) / (T - w)))``;
- multistep: ``gamma ** (number of milestones <= t)`` (the Caffe solvers' policy);
- constant: 1.

and the rate is ``max(lr0 * factor, min_lr)`` after warm-up (``min_lr`` does not apply to
multistep or constant).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["lr_factor", "StepScheduler"]


def lr_factor(
    step: int,
    *,
    name: str,
    total_steps: int,
    warmup_steps: int = 0,
    warmup_start_factor: float = 0.0,
    power: float = 1.0,
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
) -> float:
    """Multiplier of the base learning rate at iteration ``step`` (0-based)."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if step < warmup_steps:
        return warmup_start_factor + (1.0 - warmup_start_factor) * step / warmup_steps
    if name == "constant":
        return 1.0
    if name == "multistep":
        return gamma ** bisect.bisect_right(list(milestones), step)
    span = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    if name == "poly":
        return (1.0 - progress) ** power
    if name == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"schedule name must be poly, cosine, multistep or constant, got {name!r}")


class StepScheduler:
    """Sets every param group's ``lr`` to ``base_lr * factor(step)`` of its optimizer.

    Each group keeps its own ``initial_lr`` so that groups with different base rates scale
    together. ``step()`` advances one iteration; the state is just the iteration count.
    """

    def __init__(
        self,
        optimizers: Sequence[torch.optim.Optimizer],
        *,
        name: str,
        total_steps: int,
        warmup_steps: int = 0,
        warmup_start_factor: float = 0.0,
        power: float = 1.0,
        milestones: Sequence[int] = (),
        gamma: float = 0.1,
        min_lr: float = 0.0,
    ) -> None:
        self.optimizers = list(optimizers)
        self.kwargs = dict(name=name, total_steps=total_steps, warmup_steps=warmup_steps,
                           warmup_start_factor=warmup_start_factor, power=power,
                           milestones=list(milestones), gamma=gamma)
        lr_factor(0, **self.kwargs)  # validates the name and totals up front
        self.min_lr = min_lr
        self.last_step = 0
        for optimizer in self.optimizers:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        self._apply()

    def lr_at(self, step: int, base_lr: float) -> float:
        lr = base_lr * lr_factor(step, **self.kwargs)
        if step >= self.kwargs["warmup_steps"] and self.kwargs["name"] in ("poly", "cosine"):
            lr = max(lr, self.min_lr)
        return lr

    def _apply(self) -> None:
        for optimizer in self.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = self.lr_at(self.last_step, group["initial_lr"])

    def step(self) -> None:
        self.last_step += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for o in self.optimizers for g in o.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self.last_step, **self.kwargs, "min_lr": self.min_lr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_step = int(state["last_step"])
        self._apply()
