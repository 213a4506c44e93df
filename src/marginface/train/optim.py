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

from marginface.train.config import Config
from marginface.train.schedule import StepScheduler

__all__ = ["split_decay_groups", "build_optimizer", "build_run_optimizers"]

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


def build_run_optimizers(config: Config, model: nn.Module, classifier: nn.Module,
                         total_steps: int
                         ) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer, StepScheduler]:
    """The backbone's and the classifier's optimizers and their shared per-step LR schedule.

    The classifier has its own optimizer so that a sharded classifier's state stays on its rank;
    ``optimizer.head_weight_decay`` (default: ``weight_decay``) applies to all of its rows; a
    head's ``no_weight_decay`` parameters (the binary heads' bias) get none.
    """
    o, s = config.optimizer, config.schedule
    kwargs = dict(name=o.name, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                  betas=o.betas, eps=o.eps)
    optimizer = build_optimizer(
        split_decay_groups(model, o.weight_decay, decay_norm_and_bias=o.decay_norm_and_bias),
        **kwargs)
    head_wd = o.weight_decay if o.head_weight_decay is None else o.head_weight_decay
    head = getattr(classifier, "head", None)
    exempt = {id(getattr(head, name)) for name in getattr(head, "no_weight_decay", ())}
    head_groups = [{"params": [p for p in classifier.parameters() if id(p) not in exempt],
                    "weight_decay": head_wd}]
    if exempt:  # the binary heads' threshold: no decay towards 0 (like the backbone's biases)
        head_groups.append({"params": [p for p in classifier.parameters() if id(p) in exempt],
                            "weight_decay": 0.0})
    head_optimizer = build_optimizer(head_groups, **kwargs)
    scheduler = StepScheduler(
        [optimizer, head_optimizer], name=s.name, total_steps=total_steps,
        warmup_steps=s.warmup_steps, warmup_start_factor=s.warmup_start_factor,
        power=s.power, milestones=s.milestones, gamma=s.gamma, min_lr=s.min_lr)
    return optimizer, head_optimizer, scheduler
