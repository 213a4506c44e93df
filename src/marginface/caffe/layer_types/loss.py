"""FocalLoss and Accuracy layers (SoftmaxWithLoss is ``marginface.caffe.margin_layers``'s).

``loss_param.normalization`` (Caffe's LossParameter): VALID (default; divide by the number of
labels that are not ``ignore_label``), FULL (all labels), BATCH_SIZE (outer count), NONE; the legacy
``normalize: false`` means BATCH_SIZE. The normaliser is at least 1.

- FocalLoss (the softmax focal loss of the Caffe fork used by xialuxi/arcface-caffe,
  ``focal_loss_param { type: ORIGIN gamma alpha beta }``; Lin et al., "Focal Loss for Dense Object
  Detection", ICCV 2017): with ``p_t`` the softmax probability of the label,
  ``FL = -alpha (1 - p_t)^gamma log(max(p_t, FLT_MIN))`` summed and divided by the normaliser
  (VALID by default, i.e. the mean). ``alpha`` (0.25) is one weight for every class; ``beta`` only
  enters the LINEAR variant, which is not supported (ValueError). Its backward is the exact
  derivative of this value.
- Accuracy: fraction of labels for which fewer than ``top_k`` (1) other classes score at least as
  high (Caffe's count: a tie counts against the label).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from marginface.caffe.layer_types.base import CaffeLayer, Shape, canonical_axis, sub
from marginface.caffe.prototxt import Message

__all__ = ["FocalLoss", "Accuracy"]

_FLT_MIN = 1.17549435e-38


def _normalization(layer: Message, where: str) -> tuple[str, int | None]:
    p = sub(layer, "loss_param")
    ignore = int(p.get("ignore_label")) if p.has("ignore_label") else None
    if p.has("normalization"):
        mode = str(p.get("normalization")).upper()
        mode = {"0": "FULL", "1": "VALID", "2": "BATCH_SIZE", "3": "NONE"}.get(mode, mode)
    elif p.has("normalize"):
        mode = "VALID" if bool(p.get("normalize")) else "BATCH_SIZE"
    else:
        mode = "VALID"
    if mode not in ("FULL", "VALID", "BATCH_SIZE", "NONE"):
        raise ValueError(f"{where}: unknown loss normalization {mode}")
    return mode, ignore


class _LabelledLayer(CaffeLayer):
    """Shared label handling: scores (outer, C, inner) against labels (outer * inner)."""

    axis: int
    ignore_label: int | None

    def _labels(self, scores: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, int, Tensor]:
        axis = canonical_axis(self.axis, scores.dim(), self.where)
        channels = scores.shape[axis]
        # Bring the class axis last: (outer, inner, C).
        moved = scores.reshape(*scores.shape[:axis], channels, -1).movedim(axis, -1)
        moved = moved.reshape(-1, channels)
        if labels.numel() != moved.shape[0]:
            raise ValueError(f"{self.where}: {labels.numel()} labels for {moved.shape[0]} "
                             f"predictions of shape {tuple(scores.shape)}")
        flat = labels.reshape(-1)
        if flat.is_floating_point() and not torch.equal(flat, flat.round()):
            raise ValueError(f"{self.where}: labels must be whole numbers")
        flat = flat.long()
        valid = torch.ones_like(flat, dtype=torch.bool)
        if self.ignore_label is not None:
            valid = flat != self.ignore_label
        bad = valid & ((flat < 0) | (flat >= channels))
        if bool(bad.any()):
            index = int(bad.nonzero()[0, 0])
            raise ValueError(f"{self.where}: label {int(flat[index])} at index {index} outside "
                             f"[0, {channels})")
        return moved, torch.where(valid, flat, torch.zeros_like(flat)), int(valid.sum()), valid

    def out_shapes(self, shapes: Sequence[Shape]) -> list[Shape]:
        return [()]


class FocalLoss(_LabelledLayer):
    """Softmax focal loss ``-alpha (1 - p_t)^gamma log p_t`` with Caffe's loss normalization."""

    def __init__(self, layer: Message, phase: str) -> None:
        super().__init__(str(layer.get("name")), str(layer.get("type")))
        self.axis = int(sub(layer, "softmax_param").get("axis", 1))
        self.mode, self.ignore_label = _normalization(layer, self.where)
        if len(layer.get_all("top")) != 1:
            raise ValueError(f"{self.where}: FocalLoss makes exactly one top")
        p = sub(layer, "focal_loss_param")
        kind = str(p.get("type", "ORIGIN")).upper()
        if kind not in ("ORIGIN", "0"):
            raise ValueError(f"{self.where}: focal loss type {kind} is not supported (ORIGIN)")
        self.gamma = float(p.get("gamma", 2.0))
        self.alpha = float(p.get("alpha", 0.25))
        if self.gamma < 0 or self.alpha <= 0:
            raise ValueError(f"{self.where}: needs gamma >= 0 and alpha > 0, got gamma "
                             f"{self.gamma}, alpha {self.alpha}")

    def forward(self, scores: Tensor, labels: Tensor) -> tuple[Tensor]:
        moved, flat, n_valid, valid = self._labels(scores, labels)
        logp = torch.log_softmax(moved, dim=1).gather(1, flat[:, None])[:, 0]
        logp = logp.clamp_min(math.log(_FLT_MIN))
        per = -self.alpha * (1.0 - logp.exp()).pow(self.gamma) * logp
        outer = scores.shape[:canonical_axis(self.axis, scores.dim(), self.where)].numel()
        n = {"FULL": flat.numel(), "VALID": n_valid, "BATCH_SIZE": outer, "NONE": 1}[self.mode]
        return ((per * valid).sum() / float(max(1, n)),)


class Accuracy(_LabelledLayer):
    def __init__(self, layer: Message, phase: str) -> None:
        super().__init__(str(layer.get("name")), str(layer.get("type")))
        p = sub(layer, "accuracy_param")
        self.top_k = int(p.get("top_k", 1))
        self.axis = int(p.get("axis", 1))
        self.ignore_label = int(p.get("ignore_label")) if p.has("ignore_label") else None
        if len(layer.get_all("top")) > 1:
            raise ValueError(f"{self.where}: the per-class accuracy top is not supported")

    @torch.no_grad()
    def forward(self, scores: Tensor, labels: Tensor) -> tuple[Tensor]:
        moved, flat, n_valid, valid = self._labels(scores, labels)
        true = moved.gather(1, flat[:, None])
        better = (moved >= true).sum(dim=1) - 1  # Caffe: ties with other classes count against
        correct = ((better < self.top_k) & valid).sum()
        return (correct.to(scores.dtype) / max(1, n_valid),)
