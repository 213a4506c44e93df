"""Sub-centre blocks of the fused loss: ``cos_ij = max_k cos(x_i, W_{j,k})`` (Sub-center ArcFace).

Deng et al., "Sub-center ArcFace", ECCV 2020. The weight holds K rows per class, class-major
(row ``j K + k`` is sub-centre k of class j). Each block of ``n`` classes is one (batch, n K)
product, column-normalised, viewed as (batch, n, K) and reduced by the maximum; the gradient of
``cos_ij`` goes to the arg-max sub-centre only (the derivative of the max, almost everywhere).
For the target entries the forward pass's arg-max (``tgt_k``) is reused in the backward pass, so
value and gradient always refer to the same sub-centre.

This path serves only ``LogitSpec.sub_centers > 1`` (normalised rows, no bias) and is eager; the
K = 1 heads keep the compiled blocks of ``marginface.heads.fused.blocks``. Products run in
``xm``'s dtype (bfloat16 with ``matmul_dtype=torch.bfloat16``); the gradient products in
float16 mode run in the compute dtype (no float16 overflow of exact margin gradients).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

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
                          negatives: NegativeBlocks | None = None) -> Tensor:
    """Row-wise logsumexp over the classes (``weight.shape[0] // k``), running max per block."""
    batch, num = xm.shape[0], weight.shape[0] // k
    run_max = torch.full((batch,), -math.inf, dtype=cd, device=xm.device)
    total = torch.zeros(batch, dtype=cd, device=xm.device)
    for c0 in range(0, num, block):
        c1 = min(c0 + block, num)
        lg, _, _ = _block_cos(xm, weight, inv_norm, c0, c1, k, cd)
        run_max = accumulate_block(lg, c0, c1, tgt_local, tgt_logit, run_max, total, negatives)
    return run_max + total.log()


def subcenter_backward(xm: Tensor, weight: Tensor, inv_norm: Tensor, k: int, tgt_local: Tensor,
                       tgt_grad: Tensor, tgt_k: Tensor, block: int, shift: Tensor,
                       cd: torch.dtype, grad_weight: Tensor,
                       negatives: NegativeBlocks | None = None) -> Tensor:
    """Gradients of ``sum_i |g| CE_i`` wrt ``xm`` (returned) and the weight (written).

    ``tgt_grad`` (batch,) is the finished gradient of each owned target logit
    (``|g|(p_y - 1) dt/dcos``), ``tgt_k`` (batch,) its sub-centre.
    """
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
        if negatives is None:
            gz = torch.exp(value + neg)
        else:
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
