"""Caffe's SGD and Nesterov update rules as a ``torch.optim.Optimizer``.

Caffe (``SGDSolver::ApplyUpdate``) clips the global gradient norm to ``clip_gradients`` (when >= 0),
divides by ``iter_size``, adds the weight decay (L2: ``wd*w``, L1: ``wd*sign(w)``) and folds the
rate into the momentum history: ``v = momentum*v + lr*g``, ``w -= v`` (Nesterov:
``w -= (1+momentum)*v_new - momentum*v_old``). ``torch.optim.SGD`` instead keeps the rate out of
the history, which gives different steps whenever the rate changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["CaffeSGD"]


class CaffeSGD(torch.optim.Optimizer):
    """Caffe's SGD / Nesterov update (rate folded into the momentum history).

    Param-group keys: ``lr`` (already ``rate * lr_mult``), ``weight_decay`` (already
    ``weight_decay * decay_mult``), ``momentum``, ``nesterov``, ``regularization`` ("L2" | "L1"),
    ``iter_size``. ``clip_gradients`` (>= 0) clips the norm over all parameters first.
    """

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0, *, nesterov: bool = False,
                 regularization: str = "L2", iter_size: int = 1,
                 clip_gradients: float = -1.0) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"CaffeSGD: lr, momentum and weight_decay must be >= 0, got "
                             f"{lr!r}, {momentum!r}, {weight_decay!r}")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
                        regularization=regularization, iter_size=iter_size)
        super().__init__(params, defaults)
        self.clip_gradients = float(clip_gradients)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        scale = 1.0
        if self.clip_gradients >= 0:
            grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
            norm = math.sqrt(sum(float((gr.double() ** 2).sum()) for gr in grads))
            if norm > self.clip_gradients:
                scale = self.clip_gradients / norm
        for group in self.param_groups:
            mu, lr, wd = group["momentum"], group["lr"], group["weight_decay"]
            factor = scale / group["iter_size"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                decay = None
                if wd:
                    decay = p if group["regularization"] == "L2" else torch.sign(p)
                state = self.state[p]
                history = state.get("history")
                if history is None:
                    history = state["history"] = torch.zeros_like(p)
                if group["nesterov"]:
                    previous = history.clone()
                # v = mu v + lr (g factor + wd decay), in place: no temporaries of the
                # parameter's size (the optimizer step dominated small-input CPU training)
                history.mul_(mu).add_(p.grad, alpha=lr * factor)
                if decay is not None:
                    history.add_(decay, alpha=lr * wd)
                if group["nesterov"]:
                    p.sub_((1.0 + mu) * history - mu * previous)
                else:
                    p.sub_(history)
        return loss
