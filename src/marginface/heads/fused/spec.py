"""What a head tells the fused and sharded losses: its logits (``LogitSpec``) and batch statistics.

A head describes its logits once, as a ``LogitSpec``; the fused blockwise loss (one process) and
the class-sharded loss (``marginface.train.sharded_classifier``) both compute from it, so a head
never writes its own blockwise or distributed code. See docs/heads.md ("The head interface").

Three kinds of logits, ``cos_ij = <x_i/|x_i|, W_j/|W_j|>``:

- ``"margin"``: ``z_ij = s * n(cos_ij)`` for the other classes, ``z_iy = s * t(cos_iy, |x_i|)``;
- ``"sphereface"``: the same with ``|x_i|`` in place of ``s``;
- ``"softmax"``: ``z_ij = <x_i, W_j> + b_j`` (no target function, no margin).

``t`` is the built-in combined margin ``psi(m1*theta + m2) - m3`` (Deng et al., "ArcFace",
CVPR 2019, eq. 4) or SphereFace's ``(lambda*cos + psi(m*theta)) / (1 + lambda)`` (Liu et al.,
CVPR 2017), or a head's own ``target_fn`` (a ``RowFunction`` with per-sample parameters, for margins
that differ per sample). ``n`` is the identity unless the head gives ``negatives`` (e.g.
CurricularFace's re-weighting of hard negatives); without it the compiled block kernels run.

``BatchStats`` is what a head may look at before the loss builds its spec: the global batch's
feature norms and, on request, its target cosines (all-reduced over the ranks in the sharded
loss, so every rank sees the same numbers and moving state stays in step).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from marginface.functional import margin_target_and_grad, sphereface_target

__all__ = ["RowFunction", "LogitSpec", "BatchStats", "batch_stats", "EPS"]

EPS = 1e-12  # F.normalize's eps, so the fused path normalises exactly like the heads


@dataclass(frozen=True)
class RowFunction:
    """An elementwise function with per-sample parameters, each a tensor of shape (batch,).

    As ``LogitSpec.target_fn``: ``fn(cos, norm, *params) -> (t, dt/dcos, dt/dnorm or None)`` on the
    target cosines and feature norms of some rows, with the parameters of those rows.
    As ``LogitSpec.negatives``: ``fn(cos, *params) -> (n(cos), dn/dcos)`` on a (rows, classes)
    block of cosines, parameters of shape (rows, 1). Both run without autograd.
    """

    fn: Callable[..., tuple]
    params: tuple[Tensor, ...] = ()

    def rows(self, index: Tensor, dtype: torch.dtype) -> tuple[Tensor, ...]:
        """The parameters of the rows ``index``, in ``dtype``."""
        return tuple(p.detach()[index].to(dtype) for p in self.params)


@dataclass(frozen=True)
class LogitSpec:
    """Which logits the fused loss computes: ``kind`` is "margin", "sphereface" or "softmax".

    ``scale, m1, m2, m3`` (margin) and ``m, lambda_`` (sphereface) set the built-in target;
    ``detach_margin`` keeps its value but passes the gradient straight through (dt/dcos = 1).
    ``target_fn`` replaces the built-in target (per-sample margins, and the radial term
    ``dt/d|x|`` when the margin depends on the norm, as MagFace's). ``negatives`` changes the
    non-target logits to ``s * n(cos)`` ("margin" kind only).

    ``sub_centers = K > 1`` ("margin" kind): the weight holds K rows per class (class-major,
    row ``j K + k``) and ``cos_ij`` is the maximum over them (Sub-center ArcFace;
    ``marginface.heads.fused.subcenters``).

    ``binary=True`` ("margin" kind, K = 1): one-vs-all sigmoid losses instead of the softmax
    (SphereFace2, UniFace; ``marginface.heads.fused.binary``). With ``z = s n(cos) + b`` for
    the other classes and ``z_y = s t(cos_y) + b`` (``b`` the head's learnable bias, the loss's
    ``bias`` argument, one number), the loss of a sample is ``loss_scale * (pos_weight *
    softplus(-z_y) + neg_weight * sum_{j != y} softplus(z_j))``: separable over the classes.
    ``class_weights`` (one per row of the loss's ``weight``, or None: all 1) multiply the negative
    terms of each class: Partial FC's sampled negatives, reweighted to an unbiased sum.
    """

    kind: str
    scale: float = 1.0
    m1: float = 1.0
    m2: float = 0.0
    m3: float = 0.0
    m: int = 4
    lambda_: float = 0.0
    detach_margin: bool = False
    target_fn: RowFunction | None = None
    negatives: RowFunction | None = None
    sub_centers: int = 1
    binary: bool = False
    pos_weight: float = 1.0
    neg_weight: float = 1.0
    loss_scale: float = 1.0
    class_weights: Tensor | None = None

    def target_terms(self, cos: Tensor, norm: Tensor,
                     rows: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Unscaled target ``t``, ``dt/dcos`` and ``dt/d|x|`` (None: 0) of the samples ``rows``.

        ``cos`` and ``norm`` are those rows' target cosines and feature norms.
        """
        radial = None
        if self.target_fn is not None:
            fn = self.target_fn
            value, grad, radial = fn.fn(cos, norm, *fn.rows(rows, cos.dtype))
        elif self.kind == "margin":
            value, grad = margin_target_and_grad(cos, self.m1, self.m2, self.m3)
        else:
            psi, dpsi = margin_target_and_grad(cos, float(self.m))
            value = sphereface_target(cos, psi, self.lambda_)
            grad = sphereface_target(torch.ones_like(dpsi), dpsi, self.lambda_)
        if self.detach_margin:
            grad, radial = torch.ones_like(grad), None
        return value, grad, radial

    def target(self, cos: Tensor) -> tuple[Tensor, Tensor]:
        """Unscaled target and ``dt/dcos`` of the built-in target (no per-sample parameters)."""
        rows = torch.arange(cos.shape[0], device=cos.device)
        value, grad, _ = self.target_terms(cos, torch.ones_like(cos), rows)
        return value, grad

    def check_supported(self) -> None:
        """ValueError for combinations the losses do not compute."""
        if self.kind not in ("margin", "sphereface", "softmax"):
            raise ValueError(f"kind must be 'margin', 'sphereface' or 'softmax', got {self.kind!r}")
        if isinstance(self.sub_centers, bool) or not isinstance(self.sub_centers, int) or (
                self.sub_centers < 1):
            raise ValueError(f"sub_centers must be an integer >= 1, got {self.sub_centers!r}")
        if self.sub_centers > 1 and self.kind != "margin":
            raise ValueError(f"sub_centers need kind 'margin', got {self.kind!r}")
        if self.binary and (self.kind != "margin" or self.sub_centers != 1):
            raise ValueError(f"binary losses need kind 'margin' and sub_centers=1, got "
                             f"{self.kind!r}, {self.sub_centers!r}")
        if self.class_weights is not None and not self.binary:
            raise ValueError("class_weights need a binary loss (the softmax normaliser is not a "
                             "sum of per-class terms)")
        if self.negatives is not None and self.kind != "margin":
            raise ValueError(f"negatives need kind 'margin' (s * n(cos)), got {self.kind!r}")


@dataclass(frozen=True)
class BatchStats:
    """The global batch as a head sees it before a loss: all detached, all of shape (batch,).

    ``norms`` are the feature norms ``|x_i|``; ``target_cos`` the target cosines
    ``cos(theta_{i, y_i})`` when the head asked for them (``needs_target_cos``), else None.
    """

    labels: Tensor
    norms: Tensor
    target_cos: Tensor | None = None


def batch_stats(embeddings: Tensor, weight: Tensor, local_labels: Tensor, labels: Tensor, *,
                target_cos: bool, group: dist.ProcessGroup | None = None,
                sub_centers: int = 1) -> BatchStats:
    """``BatchStats`` of a (global) batch; ``local_labels`` index ``weight``'s classes or are -1.

    With ``sub_centers = K > 1`` the target cosine is the maximum over the class's K rows.

    With a process group each rank computes the target cosines of the rows whose class it holds
    and one all-reduce (sum) gives every rank all of them.
    """
    with torch.no_grad():
        x = embeddings.detach()
        dtype = torch.float64 if torch.float64 in (x.dtype, weight.dtype) else torch.float32
        x = x.to(dtype)
        norms = x.norm(dim=1)
        cos = None
        if target_cos:
            owned = (local_labels >= 0).nonzero().squeeze(1)
            k = sub_centers
            rows = local_labels[owned].unsqueeze(1) * k + torch.arange(k, device=x.device)
            wy = weight.detach()[rows].to(dtype)  # (owned, K, D)
            unit = x[owned] / norms[owned].clamp_min(EPS).unsqueeze(1)
            cos = torch.zeros_like(norms)
            cos[owned] = ((unit.unsqueeze(1) * wy).sum(2) / wy.norm(dim=2).clamp_min(EPS)
                          ).amax(1)
            if group is not None:
                dist.all_reduce(cos, group=group)
    return BatchStats(labels=labels.detach(), norms=norms, target_cos=cos)
