"""Fused one-vs-all (binary) loss: SphereFace2 and UniFace without the (batch, classes) logits.

``LogitSpec.binary``: every class is its own sigmoid classifier. With ``cos_ij`` the cosines,
``z_ij = s n(cos_ij) + b`` for the other classes and ``z_iy = s t(cos_iy) + b`` for the target
(``n`` the spec's ``negatives`` or the identity, ``t`` its target; ``b`` one learnable number),

    loss = loss_scale / B * sum_i [ pos_weight softplus(-z_iy)
                                    + neg_weight sum_{j != y_i} softplus(z_ij) ]

(Wen et al., "SphereFace2", ICLR 2022; Zhou et al., "UniFace", ICCV 2023); ``class_weights``
(Partial FC) multiply each class's negative terms. No logsumexp ties the
classes together, so the loss is a plain sum over the classes: each block of classes adds its
terms, and with a process group (class shards) the partial sums are all-reduced once.

Passes: the forward pass sums ``softplus`` block by block; the backward pass recomputes each
block's cosines and turns them into ``dL/dcos = g neg_weight s sigmoid(z) n'(cos)`` with the
target entries set to ``-g pos_weight s sigmoid(-z_y) t'(cos_y)``, then the same two products and
the step through the row normalisation as the softmax loss (``kernels.finish_weight_grad``).
The bias's gradient is the sum of ``dL/dz`` over the entries (all-reduced over the group, so
every rank holds the whole gradient of its replicated copy). Memory: O(batch x block).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from marginface.heads.fused import kernels
from marginface.heads.fused.binary_blocks import block_grad, block_terms, entry_sigmoids
from marginface.heads.fused.blocks import block_targets
from marginface.heads.fused.gradient_cache import reusable_gradient
from marginface.heads.fused.spec import EPS, LogitSpec

__all__ = ["fused_binary_loss", "softplus"]


def softplus(z: Tensor) -> Tensor:
    """``log(1 + exp(z))`` exactly, in one pass (``F.softplus`` turns linear above 20: 2e-9 off)."""
    return torch.logaddexp(z, z.new_zeros(()))


class _FusedBinary(torch.autograd.Function):
    """(embeddings, weight, bias, local targets) -> mean binary loss, optionally over a group."""

    @staticmethod
    def forward(ctx, embeddings, weight, bias, local_labels, spec, block, mm_dtype, group):  # type: ignore[override]
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return _FusedBinary._forward(ctx, embeddings, weight, bias, local_labels, spec,
                                         block, mm_dtype, group)

    @staticmethod
    def _setup(embeddings, weight, bias, spec, mm_dtype):
        cd = torch.float64 if torch.float64 in (embeddings.dtype, weight.dtype) else torch.float32
        mmd = cd if mm_dtype in (torch.float32, torch.float64) else mm_dtype
        x = embeddings.detach().to(cd)
        w = weight.detach().to(cd)
        b = 0.0 if bias is None else float(bias.detach().reshape(()))
        norm = x.norm(dim=1)
        unit = x / norm.clamp_min(EPS).unsqueeze(1)
        inv_norm = torch.linalg.vector_norm(w, dim=1).clamp_min_(EPS).reciprocal_()
        params = () if spec.negatives is None else tuple(
            p.detach().to(cd).unsqueeze(1) for p in spec.negatives.params)
        return cd, mmd, x, w, b, norm, unit, inv_norm, params

    @staticmethod
    def _block_args(spec, b, cd, device):
        """The negatives function, the class weights and (scale, bias) as 0-dim tensors."""
        fn = None if spec.negatives is None else spec.negatives.fn
        weights = None if spec.class_weights is None else spec.class_weights.to(cd)
        consts = (torch.tensor(spec.scale, dtype=cd, device=device),
                  torch.tensor(b, dtype=cd, device=device))
        return fn, weights, consts

    @staticmethod
    def _targets(spec, unit, w, inv_norm, norm, local_labels, b):
        owned = (local_labels >= 0).nonzero().squeeze(1)
        cls = local_labels[owned]
        cos = ((unit[owned] * w[cls]).sum(1) * inv_norm[cls]).clamp(-1.0, 1.0)
        t, dt, dn = spec.target_terms(cos, norm[owned], owned)
        return owned, spec.scale * t + b, dt, dn

    @staticmethod
    def _forward(ctx, embeddings, weight, bias, local_labels, spec, block, mm_dtype, group):
        cd, mmd, x, w, b, norm, unit, inv_norm, params = _FusedBinary._setup(
            embeddings, weight, bias, spec, mm_dtype)
        owned, z_y, _, _ = _FusedBinary._targets(spec, unit, w, inv_norm, norm, local_labels, b)
        total = spec.pos_weight * softplus(-z_y).sum()
        um = unit.to(mmd)
        fn, weights, consts = _FusedBinary._block_args(spec, b, cd, x.device)
        neg = torch.zeros((), dtype=cd, device=x.device)
        num, batch = w.shape[0], x.shape[0]
        prod = torch.empty(batch * block, dtype=mmd, device=x.device)
        work = torch.empty(batch * block, dtype=cd, device=x.device)
        for b0 in range(0, num, block):
            b1 = min(b0 + block, num)
            r = torch.mm(um, w[b0:b1].to(mmd).t(), out=prod[: batch * (b1 - b0)].view(batch, -1))
            terms = block_terms(work[: batch * (b1 - b0)].view(batch, -1), r, inv_norm[b0:b1],
                                None if weights is None else weights[b0:b1], *consts, fn, params)
            rows, cols = block_targets(local_labels, b0, b1)
            if rows.numel():
                terms[rows, cols] = 0.0  # the target's own term is the positive one above
            neg += terms.sum()
        total = total + spec.neg_weight * neg
        if group is not None:
            dist.all_reduce(total, group=group)
        loss = total * (spec.loss_scale / x.shape[0])
        ctx.save_for_backward(embeddings, weight, bias, local_labels)
        ctx.spec, ctx.block, ctx.mm_dtype, ctx.group = spec, block, mm_dtype, group
        return loss.to(embeddings.dtype if embeddings.dtype == torch.float64 else cd)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        with torch.autocast(device_type=grad_out.device.type, enabled=False):
            return _FusedBinary._backward(ctx, grad_out)

    @staticmethod
    def _backward(ctx, grad_out):
        embeddings, weight, bias, local_labels = ctx.saved_tensors
        spec, group = ctx.spec, ctx.group
        cd, mmd, x, w, b, norm, unit, inv_norm, params = _FusedBinary._setup(
            embeddings, weight, bias, spec, ctx.mm_dtype)
        g = float(grad_out) * spec.loss_scale / x.shape[0]
        owned, z_y, dt, dn = _FusedBinary._targets(spec, unit, w, inv_norm, norm,
                                                   local_labels, b)
        # dL/dz_y and, through t, dL/dcos_y of the owned targets
        gz_y = -g * spec.pos_weight * torch.sigmoid(-z_y)
        tgt_grad = torch.zeros(x.shape[0], dtype=cd, device=x.device)
        tgt_grad[owned] = gz_y * spec.scale * dt
        grad_b = gz_y.sum()
        grad_w = reusable_gradient(weight, tuple(w.shape), cd)
        gm_dtype = cd if mmd == torch.float16 else mmd  # no float16 range for exact gradients
        um, ug = unit.to(mmd), unit.to(gm_dtype)
        grad_unit = torch.zeros_like(unit)
        block, num, batch = ctx.block, w.shape[0], x.shape[0]
        fn, weights, (scale, bias_t) = _FusedBinary._block_args(spec, b, cd, x.device)
        coef = torch.tensor(g * spec.neg_weight, dtype=cd, device=x.device)
        prod = torch.empty(batch * block, dtype=mmd, device=x.device)
        work = torch.empty(batch * block, dtype=gm_dtype, device=x.device)
        for b0 in range(0, num, block):
            b1 = min(b0 + block, num)
            n = b1 - b0
            wb, col = w[b0:b1], inv_norm[b0:b1]
            wts = None if weights is None else weights[b0:b1]
            r = torch.mm(um, wb.to(mmd).t(), out=prod[: batch * n].view(batch, n))
            # gq = dL/d<unit, w_j> of every entry as a negative, sig = sum of w_j sigmoid(z_ij)
            gq = work[: batch * n].view(batch, n)
            sig = block_grad(gq, r, col, wts, scale, bias_t, coef, fn, params)
            rows, cols = block_targets(local_labels, b0, b1)
            if rows.numel():  # the target entries: their own gradient, no negative term
                entry = entry_sigmoids(
                    r[rows, cols], col[cols], None if wts is None else wts[cols], scale,
                    bias_t, fn, tuple(p[rows, 0] for p in params))
                sig = sig - entry.sum()
                gq[rows, cols] = (tgt_grad[rows] * col[cols]).to(gq.dtype)
            grad_b = grad_b + coef * sig
            grad_unit.add_(torch.mm(gq, wb.to(gm_dtype)).to(cd))
            gw_raw = torch.mm(gq.t(), ug).to(cd)
            kernels.finish_weight_grad(gw_raw, wb, col, grad_w[b0:b1])
        # through unit = x / |x|, plus the radial term of a norm-dependent target
        radial = (grad_unit * unit).sum(1, keepdim=True)
        grad_x = (grad_unit - unit * radial) / norm.clamp_min(EPS).unsqueeze(1)
        if dn is not None:
            grad_x[owned] += (gz_y * spec.scale * dn).unsqueeze(1) * unit[owned]
        grads_b = None
        if bias is not None:
            grad_b = grad_b.reshape(1)
            if group is not None:  # the bias is replicated: every rank gets the whole gradient
                dist.all_reduce(grad_b, group=group)
            grads_b = grad_b.reshape(bias.shape).to(bias.dtype)
        return (grad_x.to(embeddings.dtype), grad_w.to(weight.dtype), grads_b,
                None, None, None, None, None)


def fused_binary_loss(embeddings: Tensor, weight: Tensor, local_labels: Tensor, spec: LogitSpec,
                      bias: Tensor | None, block: int, matmul_dtype: torch.dtype,
                      process_group: dist.ProcessGroup | None = None) -> Tensor:
    """The binary loss of ``spec`` (``spec.binary``); ``bias`` one number (or None: 0).

    Called by ``fused_cross_entropy``; ``local_labels`` index ``weight``'s rows or are -1.
    """
    if spec.class_weights is not None and tuple(spec.class_weights.shape) != (weight.shape[0],):
        raise ValueError(f"class_weights must have shape ({weight.shape[0]},), got "
                         f"{tuple(spec.class_weights.shape)}")
    if bias is not None and bias.numel() != 1:
        raise ValueError(f"a binary loss takes one bias number, got shape {tuple(bias.shape)}")
    if bias is not None and not bool(torch.isfinite(bias.detach()).all()):
        raise ValueError(f"bias must be finite, got {float(bias.detach().reshape(()))} (a "
                         f"diverged run: lower the learning rate or restore a checkpoint)")
    return _FusedBinary.apply(embeddings, weight, bias, local_labels.long(), spec, block,
                              matmul_dtype, process_group)
