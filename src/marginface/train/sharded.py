"""The trainer's adapter around ``marginface.train.sharded_classifier.ShardedClassifier``.

Every rank builds the whole head with the same seed and keeps its contiguous block of class rows,
so a run starts from the same classifier as a single process would. Saving gathers the rows (and
the optimizer's per-row state: SGD momentum, AdamW moments) into whole tensors; loading takes this
rank's rows, so checkpoints are independent of the number of ranks. Gradient clipping uses the
global norm: backbone (replicated) plus the sum over ranks of the shards' squared norms.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from marginface.train.distributed import DistContext, all_reduce_sum

__all__ = ["ShardedClassifierAdapter", "HEAD_NAMES"]

HEAD_NAMES = {"Softmax": "softmax", "NormFace": "normface", "CosFace": "cosface",
              "AMSoftmax": "amsoftmax", "ArcFace": "arcface", "CombinedMargin": "combined",
              "SphereFace": "sphereface"}
_OPTIONS = {
    "softmax": (), "normface": ("scale",), "cosface": ("scale", "margin"),
    "amsoftmax": ("scale", "margin"), "arcface": ("scale", "margin"),
    "combined": ("scale", "m1", "m2", "m3"),
    "sphereface": ("m", "base", "gamma", "power", "lambda_min"),
}


def _head_options(head: nn.Module, name: str) -> dict[str, Any]:
    """The head's own hyper-parameters, read back from the module."""
    options: dict[str, Any] = {}
    for key in _OPTIONS[name]:
        if key == "margin":
            value = getattr(head, "margin", None)
            if value is None:
                value = head.m3 if name in ("cosface", "amsoftmax") else head.m2
        else:
            value = getattr(head, key)
        options[key] = float(value) if key != "m" else int(value)
    if name != "softmax" and hasattr(head, "detach_margin"):
        options["detach_margin"] = bool(head.detach_margin)
    return options


class ShardedClassifierAdapter:
    """This rank's shard of ``head`` behind the trainer's classifier calls."""

    def __init__(self, head: nn.Module, ctx: DistContext, *, sample_rate: float = 1.0) -> None:
        from marginface.train.sharded_classifier import ShardedClassifier

        name = HEAD_NAMES.get(type(head).__name__)
        if name is None:
            raise ValueError(f"a distributed run needs a marginface head, got "
                             f"{type(head).__name__}")
        self.ctx = ctx
        self.module = ShardedClassifier(
            name, head.embedding_dim, head.num_classes, rank=ctx.rank,
            world_size=ctx.world_size, sample_rate=sample_rate,
            block_size=getattr(head, "block_size", None),
            matmul_dtype=getattr(head, "matmul_dtype", torch.float32),
            **_head_options(head, name)).to(ctx.device)
        self.module.load_full_state_dict(head.state_dict())
        self.rows = slice(self.module.class_start, self.module.class_start + self.module.num_local)
        self.num_classes = head.num_classes

    def parameters(self) -> Iterator[nn.Parameter]:
        return self.module.parameters()

    def train(self, mode: bool = True) -> None:
        self.module.train(mode)

    def loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return self.module.loss(embeddings, labels)

    def full_state_dict(self) -> dict[str, Tensor]:
        return {k: v.cpu() for k, v in self.module.full_state_dict().items()}

    def load_full_state_dict(self, state: dict[str, Tensor]) -> None:
        self.module.load_full_state_dict(state)

    def full_optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """The optimizer's state dict with every per-row tensor gathered whole (a collective)."""
        state = copy.copy(optimizer.state_dict())
        state["state"] = {}
        for key, entry in optimizer.state_dict()["state"].items():
            whole = {}
            for name, value in entry.items():
                if isinstance(value, Tensor) and value.dim() >= 1 \
                        and value.shape[0] == self.module.num_local:
                    value = self.module._gather_rows(value).cpu()
                whole[name] = value
            state["state"][key] = whole
        return state

    def load_full_optimizer_state(self, optimizer: torch.optim.Optimizer,
                                  state: dict[str, Any]) -> None:
        local = copy.copy(state)
        local["state"] = {
            key: {name: (value[self.rows].clone() if isinstance(value, Tensor)
                         and value.dim() >= 1 and value.shape[0] == self.num_classes else value)
                  for name, value in entry.items()}
            for key, entry in state["state"].items()
        }
        optimizer.load_state_dict(local)

    def clip_grad_norm(self, backbone_params: list[nn.Parameter], max_norm: float) -> float:
        grads_b = [p.grad for p in backbone_params if p.grad is not None]
        grads_h = [p.grad for p in self.module.parameters() if p.grad is not None]
        device = self.ctx.device
        square = torch.zeros((), device=device)
        for g in grads_h:
            square = square + g.detach().float().pow(2).sum()
        square = all_reduce_sum(square, self.ctx)
        for g in grads_b:  # identical on every rank after DDP's all-reduce
            square = square + g.detach().float().pow(2).sum()
        total = float(square.sqrt())
        coef = max_norm / (total + 1e-6)
        if coef < 1.0:
            for g in grads_b + grads_h:
                g.mul_(coef)
        return total
