"""The trainer's view of the classifier: one head, or a head sharded by class across ranks.

Both expose the same few calls the engine needs: the parameters to optimise, ``loss`` (mean
cross-entropy over the global batch), the classifier state and its optimizer state *whole* (the
sharded one gathers on save and re-shards on load, so checkpoints do not depend on the number of
ranks), and gradient-norm clipping over backbone and classifier together.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from marginface.train.distributed import DistContext

__all__ = ["LocalClassifier", "build_classifier"]


class LocalClassifier:
    """A whole head in one process: ``loss`` is ``head.loss`` (the fused path of the heads)."""

    def __init__(self, head: nn.Module) -> None:
        self.head = head

    def parameters(self) -> Iterator[nn.Parameter]:
        return self.head.parameters()

    def train(self, mode: bool = True) -> None:
        self.head.train(mode)

    def loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return self.head.loss(embeddings, labels)

    def full_state_dict(self) -> dict[str, Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.head.state_dict().items()}

    def load_full_state_dict(self, state: dict[str, Tensor]) -> None:
        self.head.load_state_dict(state)

    def full_optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        return optimizer.state_dict()

    def load_full_optimizer_state(self, optimizer: torch.optim.Optimizer,
                                  state: dict[str, Any]) -> None:
        optimizer.load_state_dict(state)

    def clip_grad_norm(self, backbone_params: list[nn.Parameter], max_norm: float) -> float:
        params = backbone_params + list(self.head.parameters())
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))


def build_classifier(head: nn.Module, ctx: DistContext, *, sample_rate: float = 1.0):
    """:class:`LocalClassifier` for one process; the class-sharded classifier across ranks, or
    in one process when Partial FC sampling (``sample_rate < 1``) is asked for."""
    if not ctx.distributed and sample_rate == 1.0:
        return LocalClassifier(head)
    from marginface.train.sharded_classifier import ShardedClassifier

    return ShardedClassifier(head, rank=ctx.rank, world_size=ctx.world_size,
                             sample_rate=sample_rate)
