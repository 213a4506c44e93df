"""Fused margin-softmax cross-entropy: the loss without ever holding the (batch, classes) logits.

``loss = mean_i [ logsumexp_j z_ij - z_iy ]`` with the logits a ``LogitSpec`` describes
(docs/heads.md; Deng et al., "ArcFace", CVPR 2019, eq. 4; Liu et al., "SphereFace", CVPR 2017):

- margin heads (NormFace, CosFace, ArcFace, combined): ``z_ij = s cos(theta_ij)``,
  ``z_iy = s (psi(m1 theta_iy + m2) - m3)``;
- SphereFace: ``z_ij = |x_i| cos(theta_ij)``,
  ``z_iy = |x_i| (lambda cos + psi(m theta)) / (1 + lambda)``;
- Softmax: ``z_ij = <x_i, W_j> + b_j``.

How. A custom autograd function makes two passes over the classes in blocks
(``marginface.heads.fused.blocks``): the forward pass keeps a running logsumexp per row, the
backward pass recomputes each block's logits, turns them into ``|g| (softmax - onehot)`` with one
exp and accumulates the gradients of the embeddings and writes those of the weight block (through
the row normalisation). Memory beyond the weight and its gradient: O(batch x block) plus the
class norms.
The target entries use ``LogitSpec.target_terms`` on cosines computed from the gathered target
rows (full precision, also in bfloat16 mode). With a process group (``process_group``) the weight
is one rank's block of classes and the logsumexp and target logits are all-reduced: the
class-sharded loss of ``marginface.train.sharded_classifier``.

``matmul_dtype=torch.bfloat16`` (or float16) runs the three products in that dtype; products
are accumulated in float32 inside the GEMM and rounded once to bfloat16 (CPU torch has no
bf16-in/fp32-out GEMM), everything after that (logsumexp, softmax, margin) in float32.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor

from marginface.heads.fused.binary import fused_binary_loss
from marginface.heads.fused.blocks import backward_blocks, choose_block_size, forward_lse
from marginface.heads.fused.gradient_cache import reusable_gradient
from marginface.heads.fused.negatives import NegativeBlocks
from marginface.heads.fused.spec import EPS as _EPS
from marginface.heads.fused.spec import LogitSpec
from marginface.heads.fused.subcenters import (
    subcenter_backward,
    subcenter_forward_lse,
    subcenter_target,
)
from marginface.heads.precision_matmul import check_matmul_dtype
from marginface.validation import (
    check_embeddings,
    check_labels,
    check_margins,
    check_positive,
    check_sphereface,
)

__all__ = [
    "fused_cross_entropy",
    "fused_margin_cross_entropy",
    "fused_sphereface_cross_entropy",
    "fused_softmax_cross_entropy",
]

def _prepare(spec: LogitSpec, x: Tensor, mm_dtype: torch.dtype):
    """``xm`` (the GEMM's left operand), the unit rows and the norms of ``x``."""
    norm = x.norm(dim=1)
    if spec.kind == "margin":
        unit = x / norm.clamp_min(_EPS).unsqueeze(1)
        xm = unit * spec.scale
    elif spec.kind == "sphereface":
        unit = x / norm.clamp_min(torch.finfo(x.dtype).tiny).unsqueeze(1)
        xm = x
    else:
        unit, xm = x, x
    return xm.to(mm_dtype), unit, norm


class _FusedCrossEntropy(torch.autograd.Function):
    """(embeddings, weight, bias, local targets) -> mean CE, optionally over a process group.

    ``local_labels`` holds each row's class index in ``weight`` or -1 when another rank owns it.
    With a group, the logsumexp and the target logit are all-reduced over it and the returned
    gradient of the embeddings is this rank's part (the all-gather's backward sums the parts).
    """

    @staticmethod
    def forward(ctx, embeddings, weight, bias, local_labels, spec, block, mm_dtype, group):  # type: ignore[override]
        # The precision is this function's own business, whatever the ambient autocast.
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return _FusedCrossEntropy._forward(ctx, embeddings, weight, bias, local_labels, spec,
                                               block, mm_dtype, group)

    @staticmethod
    def _forward(ctx, embeddings, weight, bias, local_labels, spec, block, mm_dtype, group):
        cd = torch.float64 if torch.float64 in (embeddings.dtype, weight.dtype) else torch.float32
        mmd = cd if mm_dtype in (torch.float32, torch.float64) else mm_dtype
        x = embeddings.detach().to(cd)
        w = weight.detach().to(cd)
        b = None if bias is None else bias.detach().to(cd)
        xm, unit, norm = _prepare(spec, x, mmd)
        owned = (local_labels >= 0).nonzero().squeeze(1)
        inv_norm = None
        if spec.kind != "softmax":
            inv_norm = torch.linalg.vector_norm(w, dim=1).clamp_min_(_EPS).reciprocal_()
        # Target logits from the gathered target rows (B x D work, full precision).
        k = spec.sub_centers
        tgt_logit = torch.zeros(x.shape[0], dtype=cd, device=x.device)
        tgt_cos = tgt_t = tgt_dt = tgt_dn = tgt_k = None
        if spec.kind == "softmax":
            z = (x[owned] * w[local_labels[owned]]).sum(1)
            tgt_logit[owned] = z if b is None else z + b[local_labels[owned]]
        else:
            if k > 1:  # the nearest of the class's K sub-centres (and which one, for backward)
                tgt_cos, owned_k = subcenter_target(unit[owned], w, inv_norm,
                                                    local_labels[owned], k)
                tgt_k = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
                tgt_k[owned] = owned_k
            else:
                tgt_cos = (unit[owned] * w[local_labels[owned]]).sum(1) * inv_norm[
                    local_labels[owned]]
            tgt_t, tgt_dt, tgt_dn = spec.target_terms(tgt_cos, norm[owned], owned)
            factor = spec.scale if spec.kind == "margin" else norm[owned]
            tgt_logit[owned] = factor * tgt_t
        negatives = None
        if spec.negatives is not None:
            negatives = NegativeBlocks(spec.negatives.fn, spec.negatives.params, spec.scale, cd)
        shift = None
        if spec.kind == "margin" and negatives is None and spec.target_fn is None:
            # Every logit is at most s (|cos| <= 1, psi - m3 <= 1): a fixed, safe shift.
            shift = torch.full((x.shape[0],), spec.scale, dtype=cd, device=x.device)
        if k > 1:
            lse = subcenter_forward_lse(xm, w, inv_norm, k, local_labels, tgt_logit, block, cd,
                                        negatives, shift)
        else:
            lse = forward_lse(xm, w, b, inv_norm, local_labels, tgt_logit, block, shift, cd,
                              negatives)
        if group is not None:
            gmax = lse.clone()
            dist.all_reduce(gmax, op=dist.ReduceOp.MAX, group=group)
            gmax = torch.where(torch.isfinite(gmax), gmax, torch.zeros_like(gmax))
            total = torch.exp(lse - gmax)
            dist.all_reduce(total, group=group)
            lse = gmax + total.log()
            dist.all_reduce(tgt_logit, group=group)
        loss = (lse - tgt_logit).mean()
        ctx.save_for_backward(embeddings, weight, bias, local_labels, inv_norm, lse, tgt_logit,
                              owned, tgt_cos, tgt_t, tgt_dt, tgt_dn)
        ctx.spec, ctx.block, ctx.mmd, ctx.cd = spec, block, mmd, cd
        ctx.negatives, ctx.tgt_k = negatives, tgt_k
        return loss.to(embeddings.dtype if embeddings.dtype == torch.float64 else cd)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        with torch.autocast(device_type=grad_out.device.type, enabled=False):
            return _FusedCrossEntropy._backward(ctx, grad_out)

    @staticmethod
    def _backward(ctx, grad_out):
        (embeddings, weight, bias, local_labels, inv_norm, lse, tgt_logit, owned, tgt_cos,
         tgt_t, tgt_dt, tgt_dn) = ctx.saved_tensors
        spec, cd = ctx.spec, ctx.cd
        batch = embeddings.shape[0]
        g = float(grad_out) / batch
        x = embeddings.detach().to(cd)
        w = weight.detach().to(cd)
        b = None if bias is None else bias.detach().to(cd)
        # Every block writes its rows of grad_w (and grad_b) in full: no zero fill needed.
        if g == 0.0:
            grad_w = torch.zeros(w.shape, dtype=cd, device=w.device)
        else:
            grad_w = reusable_gradient(weight, tuple(w.shape), cd)
        alloc = torch.zeros if g == 0.0 else torch.empty
        grad_b = None if bias is None else alloc(b.shape, dtype=cd, device=w.device)
        if g == 0.0:
            grad_x = torch.zeros_like(x)
        else:
            xm, unit, norm = _prepare(spec, x, ctx.mmd)
            mag, sign = abs(g), math.copysign(1.0, g)
            # Owned target entries: dL/dz_iy = |g| (p_iy - 1), times dz/dcos-chain factor.
            g_y = mag * (torch.exp(tgt_logit[owned] - lse[owned]) - 1.0)
            tgt_grad = torch.zeros(batch, dtype=cd, device=x.device)
            tgt_grad[owned] = g_y if spec.kind == "softmax" else g_y * tgt_dt
            shift = lse - math.log(mag)
            if spec.sub_centers > 1:
                grad_xm = subcenter_backward(xm, w, inv_norm, spec.sub_centers, local_labels,
                                             tgt_grad, ctx.tgt_k, ctx.block, shift, cd, grad_w,
                                             ctx.negatives)
            else:
                grad_xm = backward_blocks(xm, w, b, inv_norm, local_labels, tgt_grad,
                                          ctx.block, shift, cd, grad_w, grad_b, ctx.negatives)
            if spec.kind == "margin":
                gu = grad_xm * spec.scale  # d/d unit
                radial = (gu * unit).sum(1, keepdim=True)
                grad_x = (gu - unit * radial) / norm.clamp_min(_EPS).unsqueeze(1)
                if tgt_dn is not None:  # z_iy = s t(c, |x|): d|x|/dx = x_hat
                    grad_x[owned] += (g_y * spec.scale * tgt_dn).unsqueeze(1) * unit[owned]
            elif spec.kind == "sphereface":
                # z_iy = |x| t(c): the block pass gave dt/dc * w_hat; add (t - c dt/dc) x_hat.
                grad_x = grad_xm
                coef = tgt_t - tgt_cos * tgt_dt
                if tgt_dn is not None:
                    coef = coef + norm[owned] * tgt_dn
                grad_x[owned] += (g_y * coef).unsqueeze(1) * unit[owned]
            else:
                grad_x = grad_xm
            if sign < 0:
                grad_x.neg_()
                grad_w.neg_()
                if grad_b is not None:
                    grad_b.neg_()
        grads_b = None if grad_b is None else grad_b.to(bias.dtype)
        return (grad_x.to(embeddings.dtype), grad_w.to(weight.dtype), grads_b,
                None, None, None, None, None)


def _check_common(embeddings: Tensor, weight: Tensor, labels: Tensor,
                  matmul_dtype: torch.dtype) -> None:
    if not isinstance(weight, Tensor) or weight.dim() != 2:
        shape = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise ValueError(f"weight must be (num_classes, embedding_dim), got {shape}")
    check_embeddings(embeddings, weight.shape[1])
    check_labels(labels, weight.shape[0], embeddings.shape[0])
    if embeddings.shape[0] == 0:
        raise ValueError("embeddings has 0 rows: the mean loss of an empty batch is undefined")
    check_matmul_dtype(matmul_dtype)


def fused_cross_entropy(embeddings: Tensor, weight: Tensor, labels: Tensor, spec: LogitSpec, *,
                        bias: Tensor | None = None, block_size: int | None = None,
                        matmul_dtype: torch.dtype = torch.float32,
                        process_group: dist.ProcessGroup | None = None) -> Tensor:
    """Mean cross-entropy of the logits described by ``spec`` (inputs checked by the callers).

    The one entry point of the fused loss: the heads' ``loss`` and the class-sharded classifier
    both call it. With ``process_group`` the loss is distributed over the ranks of the group:
    ``weight`` (and ``bias``) are this rank's classes, ``labels`` index them or are -1 where
    another rank holds the class, and the result is the mean over the whole batch on every rank.

    ``spec.binary``: the one-vs-all loss of ``marginface.heads.fused.binary`` instead of the
    cross-entropy (``bias`` is then the head's one learnable number, replicated on every rank).
    """
    spec.check_supported()
    if spec.binary:
        block = choose_block_size(embeddings.shape[0], weight.shape[0], weight.shape[1],
                                  block_size)
        return fused_binary_loss(embeddings, weight, labels, spec, bias, block, matmul_dtype,
                                 process_group)
    k = spec.sub_centers
    if k > 1:
        if weight.shape[0] % k or bias is not None:
            raise ValueError(f"sub_centers={k} needs a weight of K rows per class and no bias, "
                             f"got {weight.shape[0]} rows")
        # block_size counts classes; the automatic rule counts product columns (K per class)
        block = block_size if block_size is not None else max(
            1, choose_block_size(embeddings.shape[0], weight.shape[0], weight.shape[1]) // k)
        block = choose_block_size(embeddings.shape[0], weight.shape[0] // k, weight.shape[1],
                                  block)
    else:
        block = choose_block_size(embeddings.shape[0], weight.shape[0], weight.shape[1],
                                  block_size)
    return _FusedCrossEntropy.apply(embeddings, weight, bias, labels.long(), spec, block,
                                    matmul_dtype, process_group)


def fused_margin_cross_entropy(embeddings: Tensor, weight: Tensor, labels: Tensor, *,
                               scale: float, m1: float = 1.0, m2: float = 0.0, m3: float = 0.0,
                               detach_margin: bool = False, block_size: int | None = None,
                               matmul_dtype: torch.dtype = torch.float32) -> Tensor:
    """Mean CE of ``s*(psi(m1*theta_y + m2) - m3)`` / ``s*cos(theta_j)`` logits, blockwise.

    Same value and gradients as ``F.cross_entropy(functional.margin_logits(...), labels)``.
    """
    _check_common(embeddings, weight, labels, matmul_dtype)
    scale = check_positive("scale", scale)
    m1, m2, m3 = check_margins(m1, m2, m3)
    spec = LogitSpec("margin", scale=scale, m1=m1, m2=m2, m3=m3,
                     detach_margin=bool(detach_margin))
    return fused_cross_entropy(embeddings, weight, labels, spec, block_size=block_size,
                               matmul_dtype=matmul_dtype)


def fused_sphereface_cross_entropy(embeddings: Tensor, weight: Tensor, labels: Tensor, *,
                                   m: int = 4, lambda_: float = 0.0,
                                   detach_margin: bool = False, block_size: int | None = None,
                                   matmul_dtype: torch.dtype = torch.float32) -> Tensor:
    """Mean CE of A-Softmax logits (``functional.sphereface_logits``), blockwise."""
    _check_common(embeddings, weight, labels, matmul_dtype)
    check_sphereface(m, lambda_)
    spec = LogitSpec("sphereface", m=m, lambda_=float(lambda_),
                     detach_margin=bool(detach_margin))
    return fused_cross_entropy(embeddings, weight, labels, spec, block_size=block_size,
                               matmul_dtype=matmul_dtype)


def fused_softmax_cross_entropy(embeddings: Tensor, weight: Tensor, bias: Tensor | None,
                                labels: Tensor, *, block_size: int | None = None,
                                matmul_dtype: torch.dtype = torch.float32) -> Tensor:
    """Mean CE of plain ``x W^T + b`` logits, blockwise."""
    _check_common(embeddings, weight, labels, matmul_dtype)
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != weight.shape[0]):
        raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    return fused_cross_entropy(embeddings, weight, labels, LogitSpec("softmax"), bias=bias,
                               block_size=block_size, matmul_dtype=matmul_dtype)
