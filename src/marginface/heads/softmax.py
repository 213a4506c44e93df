"""Plain softmax classifier head: ``z_j = <W_j, x> + b_j`` (the baseline of every margin paper)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from marginface.heads.base import Head
from marginface.heads.fused import BatchStats, LogitSpec

__all__ = ["Softmax"]


class Softmax(Head):
    """Linear layer with bias, no normalisation and no margin: ``z = x W^T + b``.

    The baseline "Softmax" row of the ArcFace paper's tables. Labels given to ``forward`` are
    checked but change nothing (there is no margin).
    """

    bias: Tensor
    class_tensors = ("weight", "bias")

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        *,
        block_size: int | None = None,
        matmul_dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(
            embedding_dim, num_classes, block_size=block_size, matmul_dtype=matmul_dtype
        )
        self.bias = nn.Parameter(torch.zeros(self.num_classes))

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if "bias" in self._parameters:  # not yet registered during Head.__init__
            nn.init.zeros_(self.bias)

    def logit_spec(self, stats: BatchStats | None = None) -> LogitSpec:
        return LogitSpec("softmax")

    def fused_bias(self) -> Tensor | None:
        return self.bias

    def _logits(self, embeddings: Tensor, labels: Tensor | None) -> Tensor:
        dtype = self.compute_dtype(embeddings)
        return self._linear(embeddings.to(dtype), self.weight.to(dtype), self.bias.to(dtype))
