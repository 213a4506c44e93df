"""Optimizers: SGD with momentum or AdamW, with no weight decay on BN, PReLU and biases.

Decaying normalisation scales, PReLU slopes and biases pulls them towards zero for no
regularisation benefit (they do not set the network's capacity); the usual practice (e.g.
Goyal et al., 2017, "Accurate, large minibatch SGD") leaves them undecayed. Every parameter with
fewer than two dimensions, or owned by a norm layer or a PReLU, is such a parameter;
``decay_norm_and_bias=True`` decays them too.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["split_decay_groups", "build_optimizer"]

_NO_DECAY_MODULES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.PReLU)


def split_decay_groups(
    module: nn.Module, weight_decay: float, *, decay_norm_and_bias: bool = False
) -> list[dict]:
    """Two param groups: decayed weights and undecayed norm/PReLU/bias parameters."""
    decay, no_decay, seen = [], [], set()
    for owner in module.modules():
        for name, param in owner.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            exempt = isinstance(owner, _NO_DECAY_MODULES) or param.ndim < 2 or name == "bias"
            (no_decay if exempt and not decay_norm_and_bias else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return [g for g in groups if g["params"]]


def build_optimizer(
    groups: Iterable[dict],
    *,
    name: str,
    lr: float,
    momentum: float = 0.9,
    nesterov: bool = False,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.optim.Optimizer:
    """``name`` is ``sgd`` (momentum) or ``adamw`` (decoupled weight decay, Loshchilov 2019)."""
    groups = list(groups)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)
    raise ValueError(f"optimizer name must be 'sgd' or 'adamw', got {name!r}")
