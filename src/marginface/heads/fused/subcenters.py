"""Sub-centre blocks of the fused loss: ``cos_ij = max_k cos(x_i, W_{j,k})`` (Sub-center ArcFace).

Deng et al., "Sub-center ArcFace", ECCV 2020. The weight holds K rows per class, class-major
(row ``j K + k`` is sub-centre k of class j). Each block of ``n`` classes gives the (batch, n)
products with each of the K sub-centres, column-normalised and reduced by the maximum over K; the
gradient of ``cos_ij`` goes to the arg-max sub-centre only (the derivative of the max, almost
everywhere).
For the target entries the forward pass's arg-max (``tgt_k``) is reused in the backward pass, so
value and gradient always refer to the same sub-centre.

This path serves only ``LogitSpec.sub_centers > 1`` (normalised rows, no bias). With the fixed
shift ``s`` (the margin heads without changed negatives: every logit is at most ``s``) each block
is laid out sub-centre-major, (K, batch, n): K products (one per sub-centre, over strided weight
rows) into a reused buffer, so each kernel operand is contiguous and vectorises, plus one
generated elementwise pass (``kernels.subcenter_exp_rowsum`` forward, ``kernels.subcenter_grad``
backward, which writes the dense (K, batch, n) gradient block directly: no zero fill, no
scatter), then the gradient products per sub-centre and ``kernels.finish_weight_grad`` once over
the block's class-major rows, as the K = 1 blocks of ``marginface.heads.fused.blocks``. The target
classes' K entries are masked to -inf, so those classes give 0, and their value and gradient are
set apart (the gradient at ``tgt_k``). Rows whose sum falls near the subnormals are recomputed
with a running max, as in ``forward_lse``. Changed negatives (no bound, hence no fixed shift) keep
the eager running-max passes.
Products run in ``xm``'s dtype (bfloat16 with ``matmul_dtype=torch.bfloat16``); the gradient
products in float16 mode run in the compute dtype (no float16 overflow of exact margin gradients).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from marginface.heads.fused import kernels
from marginface.heads.fused.blocks import accumulate_block, block_targets
from marginface.heads.fused.negatives import NegativeBlocks

__all__ = ["subcenter_forward_lse", "subcenter_backward", "subcenter_target"]


def subcenter_target(unit: Tensor, weight: Tensor, inv_norm: Tensor, classes: Tensor,
                     k: int) -> tuple[Tensor, Tensor]:
    """``max_k cos(unit_i, W_{c_i,k})`` and its arg-max, for the rows ``unit`` of ``classes``."""
    rows = classes.unsqueeze(1) * k + torch.arange(k, device=classes.device)
    cos = (unit.unsqueeze(1) * weight[rows]).sum(2) * inv_norm[rows]
    return cos.max(1)


def _block_cos(xm: Tensor, weight: Tensor, inv_norm: Tensor, c0: int, c1: int, k: int,
               cd: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """(batch, n) max of the scaled cosines, its arg-max, and the block's 1/|w| (n K,)."""
    wb = weight[c0 * k:c1 * k].to(xm.dtype)
    col = inv_norm[c0 * k:c1 * k]
    z = torch.mm(xm, wb.t()).to(cd).mul_(col)
    value, idx = z.view(xm.shape[0], c1 - c0, k).max(2)
    return value, idx, col


def subcenter_forward_lse(xm: Tensor, weight: Tensor, inv_norm: Tensor, k: int,
                          tgt_local: Tensor, tgt_logit: Tensor, block: int, cd: torch.dtype,
                          negatives: NegativeBlocks | None = None,
                          shift: Tensor | None = None) -> Tensor:
    """Row-wise logsumexp over the classes (``weight.shape[0] // k``).

    ``shift`` (batch,): an upper bound of every logit of its row (``s``), one generated pass per
    block; without it (or with ``negatives``) a running max per block.
    """
    if shift is not None and negatives is None:
        return _shifted_lse(xm, weight, inv_norm, k, tgt_local, tgt_logit, block, cd, shift)
    batch, num = xm.shape[0], weight.shape[0] // k
    run_max = torch.full((batch,), -math.inf, dtype=cd, device=xm.device)
    total = torch.zeros(batch, dtype=cd, device=xm.device)
    for c0 in range(0, num, block):
        c1 = min(c0 + block, num)
        lg, _, _ = _block_cos(xm, weight, inv_norm, c0, c1, k, cd)
        run_max = accumulate_block(lg, c0, c1, tgt_local, tgt_logit, run_max, total, negatives)
    return run_max + total.log()


def _slabs(weight: Tensor, inv_norm: Tensor, c0: int, c1: int, k: int, mm_dtype: torch.dtype,
           buf: Tensor) -> tuple[Tensor, Tensor]:
    """Classes ``c0:c1`` sub-centre-major: the rows (K, n, D) for the products and 1/|w| (K, n).

    Slab k is sub-centre k of every class of the block: rows ``j K + k`` of the class-major
    weight (converted into ``buf`` when the products need another dtype), as strided views:
    BLAS takes the row stride.
    """
    n, dim = c1 - c0, weight.shape[1]
    rows = weight[c0 * k:c1 * k]
    if weight.dtype != mm_dtype:  # a contiguous conversion: ~2x faster than a transposing one
        rows = buf[: k * n * dim].view(k * n, dim).copy_(rows)
    return (rows.view(n, k, dim).transpose(0, 1),
            inv_norm[c0 * k:c1 * k].view(n, k).t().contiguous())


def _slab_products(xm: Tensor, rows: Tensor, buf: Tensor) -> Tensor:
    """(K, batch, n): ``xm @ rows[k]^T`` for each sub-centre k, written into ``buf``."""
    k, n = rows.shape[0], rows.shape[1]
    r = buf[: k * xm.shape[0] * n].view(k, xm.shape[0], n)
    for j in range(k):
        torch.mm(xm, rows[j].t(), out=r[j])
    return r


def _shifted_lse(xm: Tensor, weight: Tensor, inv_norm: Tensor, k: int, tgt_local: Tensor,
                 tgt_logit: Tensor, block: int, cd: torch.dtype, shift: Tensor) -> Tensor:
    """``shift_i + log sum_j exp(z_ij - shift_i)``: K products and one kernel pass per block."""
    batch, dim = xm.shape
    num = weight.shape[0] // k
    wbuf = torch.empty(block * k * dim, dtype=xm.dtype, device=xm.device)
    work = torch.empty(batch * block * k, dtype=xm.dtype, device=xm.device)
    total = torch.zeros(batch, dtype=cd, device=xm.device)
    neg = (-shift).unsqueeze(1)
    for c0 in range(0, num, block):
        c1 = min(c0 + block, num)
        wk, col = _slabs(weight, inv_norm, c0, c1, k, xm.dtype, wbuf)
        r = _slab_products(xm, wk, work)
        rows, cols = block_targets(tgt_local, c0, c1)
        if rows.numel():  # the target classes are added once, below
            r[:, rows, cols] = -math.inf
        total += kernels.subcenter_exp_rowsum(r, col, neg)
    owned = (tgt_local >= 0).nonzero().squeeze(1)
    total[owned] += torch.exp(tgt_logit[owned] - shift[owned])
    lse = shift + total.log()
    # Sums below 2^26 * tiny mean the largest terms were (nearly) subnormal: redo exactly.
    low = (total < torch.finfo(cd).tiny * 2.0**26).nonzero().squeeze(1)
    if low.numel():
        lse[low] = subcenter_forward_lse(xm[low], weight, inv_norm, k, tgt_local[low],
                                         tgt_logit[low], block, cd)
    return lse


def subcenter_backward(xm: Tensor, weight: Tensor, inv_norm: Tensor, k: int, tgt_local: Tensor,
                       tgt_grad: Tensor, tgt_k: Tensor, block: int, shift: Tensor,
                       cd: torch.dtype, grad_weight: Tensor,
                       negatives: NegativeBlocks | None = None) -> Tensor:
    """Gradients of ``sum_i |g| CE_i`` wrt ``xm`` (returned) and the weight (written).

    ``tgt_grad`` (batch,) is the finished gradient of each owned target logit
    (``|g|(p_y - 1) dt/dcos``), ``tgt_k`` (batch,) its sub-centre.
    """
    if negatives is not None:
        return _eager_backward(xm, weight, inv_norm, k, tgt_local, tgt_grad, tgt_k, block, shift,
                               cd, grad_weight, negatives)
    batch, dim = xm.shape
    num = weight.shape[0] // k
    grad_xm = torch.zeros(batch, dim, dtype=cd, device=xm.device)
    fp16 = xm.dtype == torch.float16
    gdt = cd if fp16 else xm.dtype  # the gradient products' dtype
    xg = xm.to(gdt)
    wbuf = torch.empty(block * k * dim, dtype=xm.dtype, device=xm.device)
    prod = torch.empty(batch * block * k, dtype=xm.dtype, device=xm.device)
    gbuf = torch.empty(batch * block * k, dtype=gdt, device=xm.device)
    gwbuf = torch.empty(block * k * dim, dtype=gdt, device=xm.device)
    neg = (-shift).unsqueeze(1)
    for c0 in range(0, num, block):
        c1 = min(c0 + block, num)
        n = c1 - c0
        wk, col = _slabs(weight, inv_norm, c0, c1, k, xm.dtype, wbuf)
        r = _slab_products(xm, wk, prod)
        rows, cols = block_targets(tgt_local, c0, c1)
        if rows.numel():  # exp gives 0 there; the target gradient is set below
            r[:, rows, cols] = -math.inf
        # dL/dr_kij = dL/dz_ij * (1/|w_jk|) at the arg-max sub-centre, 0 elsewhere
        g = kernels.subcenter_grad(r, col, neg, gbuf[: k * batch * n].view(k, batch, n))
        if rows.numel():
            at = tgt_k[rows]
            g[at, rows, cols] = (tgt_grad[rows] * col[at, cols]).to(gdt)
        wg = weight[c0 * k:c1 * k].view(n, k, dim).transpose(0, 1) if fp16 else wk
        gw_raw = gwbuf[: k * n * dim].view(k, n, dim)
        for j in range(k):
            if gdt == cd:
                grad_xm.addmm_(g[j], wg[j])
            else:
                grad_xm.add_(torch.mm(g[j], wg[j]).to(cd))
            torch.mm(g[j].t(), xg, out=gw_raw[j])
        # Through w_hat = w/|w|: dw = g_hat/|w| - w <w, g_hat/|w|> / |w|^2, class-major rows.
        kernels.finish_weight_grad(gw_raw.transpose(0, 1), weight[c0 * k:c1 * k].view(n, k, dim),
                                   col.t(), grad_weight[c0 * k:c1 * k].view(n, k, dim))
    return grad_xm


def _eager_backward(xm: Tensor, weight: Tensor, inv_norm: Tensor, k: int, tgt_local: Tensor,
                    tgt_grad: Tensor, tgt_k: Tensor, block: int, shift: Tensor,
                    cd: torch.dtype, grad_weight: Tensor, negatives: NegativeBlocks) -> Tensor:
    """``subcenter_backward`` for changed negatives: eager, scattered per block."""
    batch, dim = xm.shape
    num = weight.shape[0] // k
    grad_xm = torch.zeros(batch, dim, dtype=cd, device=xm.device)
    gm_dtype = cd if xm.dtype == torch.float16 else xm.dtype
    xg = xm.to(gm_dtype)
    neg = (-shift).unsqueeze(1)
    for c0 in range(0, num, block):
        c1 = min(c0 + block, num)
        n = c1 - c0
        value, idx, col = _block_cos(xm, weight, inv_norm, c0, c1, k, cd)
        cos = negatives._cos(value)
        nval, ngrad = negatives.fn(cos, *negatives.params)
        gz = torch.exp(nval * negatives.scale + neg).mul_(ngrad)
        rows, cols = block_targets(tgt_local, c0, c1)
        if rows.numel():
            gz[rows, cols] = tgt_grad[rows]
            idx[rows, cols] = tgt_k[rows]
        # dL/dr_{ijk} = dL/dz_ij * (1/|w_jk|) at the arg-max sub-centre, 0 elsewhere
        flat = idx + torch.arange(n, device=xm.device).unsqueeze(0) * k
        g = torch.zeros(batch, n * k, dtype=cd, device=xm.device)
        g.scatter_(1, flat, gz * col[flat])
        wb = weight[c0 * k:c1 * k]
        gq = g.to(gm_dtype)
        grad_xm.add_(torch.mm(gq, wb.to(gm_dtype)).to(cd))
        gw_raw = torch.mm(gq.t(), xg).to(cd)
        # Through w_hat = w/|w|: dw = g_hat/|w| - w <w, g_hat/|w|> / |w|^2.
        dots = (gw_raw * wb).sum(1, keepdim=True) * (col * col).unsqueeze(1)
        grad_weight[c0 * k:c1 * k] = gw_raw - wb * dots
    return grad_xm
