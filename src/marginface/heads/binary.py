"""The one-vs-all (binary) heads' common part: a learnable bias and the binary loss.

SphereFace2 (Wen et al., ICLR 2022) and UniFace (Zhou et al., ICCV 2023) replace the softmax by
one sigmoid classifier per class. Their scores are ``z_ij = s n(cos_ij) + b`` (target
``s t(cos_iy) + b`` with its margin, in training mode with labels), and the loss of a sample is

    loss_scale * ( pos_weight softplus(-z_iy) + neg_weight sum_{j != y_i} softplus(z_ij) ).

A sum over the classes, no normaliser: the fused loss (``marginface.heads.fused.binary``) adds it
up block by block and the class-sharded loss rank by rank, with no global softmax. ``bias`` is
one learnable number (shape (1,)), replicated on every rank of a sharded classifier (it is not a
per-class tensor); the fused backward all-reduces its gradient. ``forward`` returns the scores
``z`` (bias included): monotone in ``cos``, so ranking by score is ranking by cosine.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.distributed as dist
from torch import Tensor, nn

from marginface.heads.fused import batch_stats, fused_cross_entropy
from marginface.heads.margin import MarginHead
from marginface.heads.spec_logits import spec_logits

__all__ = ["BinaryHead", "binary_loss_from_scores"]


def binary_loss_from_scores(scores: Tensor, labels: Tensor, *, pos_weight: float,
                            neg_weight: float, loss_scale: float) -> Tensor:
    """The mean binary loss of full (batch, classes) scores (the unfused reference path)."""
    target = torch.zeros_like(scores, dtype=torch.bool)
    target[torch.arange(scores.shape[0], device=scores.device), labels.long()] = True
    zero = torch.zeros_like(scores)  # logaddexp(z, 0): softplus exact everywhere, and its grad
    terms = torch.where(target, pos_weight * torch.logaddexp(-scores, zero),
                        neg_weight * torch.logaddexp(scores, zero))
    return loss_scale * terms.sum(1).mean()


class BinaryHead(MarginHead):
    """Base of the binary heads (not used directly): ``bias`` (1,), the binary ``logit_spec``.

    Subclasses give ``logit_spec`` (``binary=True``, the target and ``negatives`` functions and
    the weights), ``plain_scores(cos)`` (the scores without margins, before the bias) and
    ``bias_sign`` (+1: the score adds ``bias``; -1: UniFace's ``s cos - b``).
    """

    bias_sign: float = 1.0
    weights_sampled_classes = True
    no_weight_decay = ("bias",)

    def __init__(self, embedding_dim: int, num_classes: int, *, scale: float,
                 bias_init: float, m2: float = 0.0, m3: float = 0.0,
                 block_size: int | None = None,
                 matmul_dtype: torch.dtype = torch.float32) -> None:
        super().__init__(embedding_dim, num_classes, scale=scale, m2=m2, m3=m3,
                         block_size=block_size, matmul_dtype=matmul_dtype)
        self.bias_init = float(bias_init)
        self.bias = nn.Parameter(torch.full((1,), self.bias_init))

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if "bias" in self._parameters:  # not yet registered during Head.__init__
            nn.init.constant_(self.bias, self.bias_init)

    def score_bias(self) -> Tensor:
        """The number added to every score: ``bias_sign * bias`` (shape (1,), differentiable)."""
        return self.bias if self.bias_sign > 0 else -self.bias

    def plain_scores(self, cos: Tensor) -> Tensor:
        """``s n0(cos)``: the scores without margins and before the bias (eval mode)."""
        raise NotImplementedError

    def _logits(self, embeddings: Tensor, labels: Tensor | None) -> Tensor:
        cos = self.cosine(embeddings)
        bias = self.score_bias().to(cos.dtype)
        if labels is None:
            return self.plain_scores(cos) + bias
        norms = embeddings.to(cos.dtype).norm(dim=1)
        return spec_logits(cos, norms, labels.long(), self.logit_spec(None)) + bias

    def target_logit(self, cos: Tensor) -> Tensor:
        """The target's score ``s t(cos_y) + bias`` as a function of ``cos(theta_y)``."""
        spec = self.logit_spec(None)
        rows = torch.arange(cos.shape[0], device=cos.device)
        value, _, _ = spec.target_terms(cos, torch.ones_like(cos), rows)
        return spec.scale * value + self.score_bias().detach().to(value.dtype)

    def fused_loss(self, embeddings: Tensor, weight: Tensor, local_labels: Tensor,
                   labels: Tensor, *, bias: Tensor | None = None,
                   process_group: dist.ProcessGroup | None = None,
                   class_weights: Tensor | None = None) -> Tensor:
        """The fused binary loss over the classes of ``weight``, with this head's own bias.

        ``class_weights`` (one per row of ``weight``) multiply the negative terms: the sharded
        classifier's Partial FC gives ``pool / drawn`` to the classes it drew at random and 1 to
        the batch's own classes, so the sampled sum estimates the full one without bias.
        """
        if bias is not None:
            raise ValueError("bias must be None for a binary head: it adds its own learnable "
                             "bias (one number, not one per class)")
        stats = batch_stats(embeddings, weight, local_labels, labels, target_cos=False,
                            group=process_group)
        spec = dataclasses.replace(self.logit_spec(stats), class_weights=class_weights)
        return fused_cross_entropy(embeddings, weight, local_labels, spec,
                                   bias=self.score_bias(), block_size=self.block_size,
                                   matmul_dtype=self.matmul_dtype, process_group=process_group)

    def _unfused_cross_entropy(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        spec = self.logit_spec(None)
        return binary_loss_from_scores(self._logits(embeddings, labels), labels,
                                       pos_weight=spec.pos_weight, neg_weight=spec.neg_weight,
                                       loss_scale=spec.loss_scale)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bias_init={self.bias_init:.4g}"
