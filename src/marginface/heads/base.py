"""The classifier-head base class: class weights, input checks, precision policy, the loss.

Every head owns ``weight`` of shape (num_classes, embedding_dim) and returns logits from
``forward(embeddings, labels=None)``. The margin is applied only when labels are given and the
module is training; ``loss(embeddings, labels)`` always applies it and returns the mean
cross-entropy.

Precision. Whatever the ambient autocast, the (batch, num_classes) matrix product runs in
``matmul_dtype`` (float32 by default; bfloat16/float16 for speed) with autocast switched off for
that product, and everything after it (margin maths, logits) is float32. Float64 modules or
inputs compute in float64 throughout, so gradcheck sees the exact maths.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from marginface.heads.fused import BatchStats, LogitSpec, batch_stats, fused_cross_entropy
from marginface.heads.precision_matmul import MATMUL_DTYPES, check_matmul_dtype, precision_linear
from marginface.validation import check_embeddings, check_labels, check_positive_int

__all__ = ["Head", "MATMUL_DTYPES"]


class Head(nn.Module):
    """Base class of the classifier heads (not used directly).

    Subclasses implement ``_logits(embeddings, labels)``: margin logits when ``labels`` is a
    tensor, plain logits when it is None; and ``logit_spec``: the same logits described for the
    fused loss. ``block_size`` and ``matmul_dtype`` are the knobs of the blockwise fused loss;
    ``block_size=None`` picks the block from the shapes and free memory
    (``marginface.heads.fused.choose_block_size``).

    The interface to the fused and the class-sharded losses (docs/heads.md, "The head
    interface"); both run the same steps with the *global* batch:

    - ``class_tensors``: names of the per-class tensors (``rows_per_class`` rows per class, 1
      but for sub-centres, class-major); the sharded classifier
      keeps this rank's rows of each, everything else of the head (buffers such as SphereFace's
      ``iteration``, moving state) whole on every rank;
    - ``advance_schedule()``: once per training-mode forward or loss with labels (schedules);
    - ``needs_target_cos``: ask for the target cosines in ``BatchStats``;
    - ``update_state(stats)``: once per training-mode loss, moving state from the global batch;
    - ``logit_spec(stats)``: the ``LogitSpec`` of this batch (per-sample parameters, negatives);
    - ``extra_loss(embeddings, labels)``: an optional per-sample term added to the loss (mean);
    - ``weights_sampled_classes``: the loss is a sum over classes (the binary heads), so under
      Partial FC sampling ``fused_loss`` takes ``class_weights`` that make the sum unbiased.
    """

    weight: Tensor
    class_tensors: ClassVar[tuple[str, ...]] = ("weight",)
    needs_target_cos: ClassVar[bool] = False
    weights_sampled_classes: ClassVar[bool] = False
    no_weight_decay: ClassVar[tuple[str, ...]] = ()  # parameters the trainer does not decay
    rows_per_class: int = 1  # K rows of each per-class tensor per class (Sub-center ArcFace)

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        *,
        block_size: int | None = None,
        matmul_dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.embedding_dim = check_positive_int("embedding_dim", embedding_dim)
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.block_size = None if block_size is None else check_positive_int(
            "block_size", block_size
        )
        self.matmul_dtype = check_matmul_dtype(matmul_dtype)
        self.weight = nn.Parameter(torch.empty(self.num_classes, self.embedding_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # insightface initialises its FC/margin weights from N(0, 0.01).
        nn.init.normal_(self.weight, std=0.01)

    # ------------------------------------------------------------------ precision helpers
    def compute_dtype(self, embeddings: Tensor) -> torch.dtype:
        """float64 if the embeddings or the weight are float64, else float32."""
        if torch.float64 in (embeddings.dtype, self.weight.dtype):
            return torch.float64
        return torch.float32

    def _linear(self, x: Tensor, w: Tensor, bias: Tensor | None = None) -> Tensor:
        """``x @ w.T (+ bias)`` with the product in ``matmul_dtype``, result in x's dtype."""
        return precision_linear(x, w, bias, self.matmul_dtype)

    def cosine(self, embeddings: Tensor) -> Tensor:
        """``cos(theta)`` (batch, num_classes): both sides L2-normalised in the compute dtype."""
        dtype = self.compute_dtype(embeddings)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            x = F.normalize(embeddings.to(dtype), dim=1)
            w = F.normalize(self.weight.to(dtype), dim=1)
        return self._linear(x, w)

    # ------------------------------------------------------------------ the public surface
    def _check(self, embeddings: Tensor, labels: Tensor | None) -> None:
        check_embeddings(embeddings, self.embedding_dim)
        if labels is not None:
            check_labels(labels, self.num_classes, embeddings.shape[0])

    def advance_schedule(self) -> None:
        """Hook run once per training-mode forward/loss with labels (schedules, e.g. SphereFace)."""

    def update_state(self, stats: BatchStats) -> None:
        """Hook run once per training-mode loss with the global batch's statistics (moving state).

        Runs before ``logit_spec`` for the same batch, on every rank with the same ``stats``.
        """

    def logit_spec(self, stats: BatchStats | None = None) -> LogitSpec:
        """The logits of this batch for the fused loss (``stats`` of the global batch)."""
        raise NotImplementedError

    def extra_loss(self, embeddings: Tensor, labels: Tensor) -> Tensor | None:
        """Per-sample terms (batch,) added to the loss as their mean (MagFace's g(|x|)); or None."""
        return None

    def fused_bias(self) -> Tensor | None:
        """The bias the fused loss adds to the logits (Softmax), else None."""
        return None

    def _logits(self, embeddings: Tensor, labels: Tensor | None) -> Tensor:
        raise NotImplementedError

    def forward(self, embeddings: Tensor, labels: Tensor | None = None) -> Tensor:
        """Logits (batch, num_classes), float32 (float64 for float64 input).

        The margin is applied when ``labels`` is given and the module is training; otherwise the
        plain logits (what verification and eval-mode classification use).
        """
        self._check(embeddings, labels)
        if labels is not None and self.training:
            self.advance_schedule()
            return self._logits(embeddings, labels)
        return self._logits(embeddings, None)

    def _prepare_loss(self, embeddings: Tensor, labels: Tensor) -> None:
        if labels is None:
            raise ValueError("labels are required for the loss, got None")
        self._check(embeddings, labels)
        if embeddings.shape[0] == 0:
            raise ValueError("embeddings has 0 rows: the mean loss of an empty batch is undefined")
        if self.training:
            self.advance_schedule()

    def loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Mean cross-entropy of the margin logits (the margin applies in train and eval mode).

        Computed by the fused blockwise path (``marginface.heads.fused``): the value and the
        gradients of ``unfused_loss`` without ever holding the (batch, num_classes) logits.
        """
        self._prepare_loss(embeddings, labels)
        loss = self.fused_loss(embeddings, self.weight, labels, labels, bias=self.fused_bias())
        extra = self.extra_loss(embeddings, labels)
        return loss if extra is None else loss + extra.mean()

    def fused_loss(self, embeddings: Tensor, weight: Tensor, local_labels: Tensor,
                   labels: Tensor, *, bias: Tensor | None = None,
                   process_group: dist.ProcessGroup | None = None) -> Tensor:
        """The fused cross-entropy of this head over the classes of ``weight`` (no extra loss).

        ``labels`` are the global classes, ``local_labels`` the rows of ``weight`` (-1: held by
        another rank of ``process_group``). The steps every loss takes: batch statistics,
        ``update_state`` (training mode), ``logit_spec``, ``fused_cross_entropy``.
        """
        stats = batch_stats(embeddings, weight, local_labels, labels,
                            target_cos=self.needs_target_cos, group=process_group,
                            sub_centers=self.rows_per_class)
        if self.training:
            self.update_state(stats)
        return fused_cross_entropy(
            embeddings, weight, local_labels, self.logit_spec(stats), bias=bias,
            block_size=self.block_size, matmul_dtype=self.matmul_dtype,
            process_group=process_group,
        )

    def unfused_loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Reference path of ``loss``: full logits, then ``F.cross_entropy`` (mean)."""
        self._prepare_loss(embeddings, labels)
        return self._unfused_cross_entropy(embeddings, labels)

    def _unfused_cross_entropy(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(self._logits(embeddings, labels), labels.long())

    def extra_repr(self) -> str:
        text = f"embedding_dim={self.embedding_dim}, num_classes={self.num_classes}"
        if self.block_size is not None:
            text += f", block_size={self.block_size}"
        if self.matmul_dtype != torch.float32:
            text += f", matmul_dtype={self.matmul_dtype}"
        return text
