"""Block-by-block passes over the classes for the fused margin cross-entropy.

Vocabulary: a *block* is a contiguous run of classes (rows of the weight) and the (batch, block)
working tensor of its logits; the fused loss, its kernels and the docs use no other word for it.

Both passes see the logits only one block of ``block`` classes at a time, as a (batch, block)
working tensor; nothing of size (batch, num_classes) is ever allocated. The logits of a block are
``l = xm @ W_hat_block^T (+ bias)``, where the caller has folded the per-row factor into ``xm``
(``s * x/|x|`` for the margin heads, ``x`` itself for SphereFace and Softmax) and ``W_hat`` is the
row-normalised block (``normalize=True``) or the raw block (Softmax). The target entries carry
the margin target logits that the caller computed beforehand: they are masked to -inf in the
block (so the elementwise kernels of ``heads.fused.kernels`` give 0 there) and their terms added
apart, or, on the running-max path, written into the block.

Block size rule (``choose_block_size``): the (batch, block) float32 working tensor should be about
``TARGET_WORKING_BYTES`` (16 MiB: big enough for the matrix products to run at full speed, small
enough to stay near the 32 MiB L3 cache), the block a multiple of 256 classes, at least 256, at
most the class count rounded up to 256, and the whole working set (three (batch, block) tensors
and two (block, dim) tensors) at most 1/8 of the memory the OS reports available.
"""

from __future__ import annotations

import math
import os

import torch
from torch import Tensor

from marginface.heads.fp16_scale import fp16_gradient_scale
from marginface.heads.fused import kernels
from marginface.heads.fused.negatives import NegativeBlocks, finish_lse

__all__ = ["TARGET_WORKING_BYTES", "choose_block_size", "forward_lse", "backward_blocks",
           "accumulate_block", "block_targets"]

TARGET_WORKING_BYTES = 16 * 2**20
_ALIGN = 256


def _available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def choose_block_size(batch: int, num_classes: int, embedding_dim: int,
                      block_size: int | None = None) -> int:
    """Classes per block: ``block_size`` if given, else the rule in the module docstring."""
    if block_size is not None:
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size must be an integer >= 1 or None, got {block_size!r}")
        return block_size
    batch = max(batch, 1)
    block = TARGET_WORKING_BYTES // (4 * batch)
    available = _available_bytes() if hasattr(os, "sysconf") else None
    if available is not None:
        per_class = 4 * (3 * batch + 2 * embedding_dim)
        block = min(block, available // 8 // per_class)
    block = max(_ALIGN, block // _ALIGN * _ALIGN)
    return min(block, math.ceil(max(num_classes, 1) / _ALIGN) * _ALIGN)


def block_targets(tgt_local: Tensor, b0: int, b1: int) -> tuple[Tensor, Tensor]:
    """Rows whose target class lies in [b0, b1) and that class's column inside the block."""
    rows = ((tgt_local >= b0) & (tgt_local < b1)).nonzero().squeeze(1)
    return rows, tgt_local[rows] - b0



def _weight_block(weight: Tensor, inv_norm: Tensor | None, b0: int, b1: int,
                  mm_dtype: torch.dtype, buf: Tensor) -> tuple[Tensor, Tensor | None]:
    """The raw rows for the GEMMs (converted into ``buf`` for low precision) and ``1/|w|``.

    The normalisation is applied to the columns of the (batch, block) products instead of the
    rows of W: that pass is needed anyway (shift, exp), so it costs nothing extra, and plain
    dtype conversions are much faster than mixed-dtype arithmetic on CPU.
    """
    wb = weight[b0:b1]
    inv = None if inv_norm is None else inv_norm[b0:b1]
    if wb.dtype == mm_dtype:
        return wb, inv
    return buf[: (b1 - b0) * wb.shape[1]].view(b1 - b0, wb.shape[1]).copy_(wb), inv


def _logits_into(out: Tensor, xm: Tensor, wb: Tensor, col: Tensor | None,
                 addend: Tensor | None) -> Tensor:
    """``out = (xm @ wb^T) * col + addend`` (col, addend optional) in as few passes as possible.

    Low-precision products are rounded once, then converted into ``out`` (float32).
    """
    if xm.dtype != out.dtype:
        out.copy_(torch.mm(xm, wb.t()))
    elif col is None and addend is not None:
        return torch.addmm(addend, xm, wb.t(), out=out)
    else:
        torch.mm(xm, wb.t(), out=out)
    if col is None:
        return out if addend is None else out.add_(addend)
    if addend is None:
        return out.mul_(col)
    return torch.addcmul(addend, out, col, out=out)


def _product(xm: Tensor, wb: Tensor, buf: Tensor, n: int) -> Tensor:
    """The raw (batch, n) products ``xm @ wb^T``, written into ``buf`` (``xm``'s dtype)."""
    return torch.mm(xm, wb.t(), out=buf[: xm.shape[0] * n].view(xm.shape[0], n))


def forward_lse(xm: Tensor, weight: Tensor, bias: Tensor | None, inv_norm: Tensor | None,
                tgt_local: Tensor, tgt_logit: Tensor, block: int, shift: Tensor | None,
                compute_dtype: torch.dtype, negatives: NegativeBlocks | None = None) -> Tensor:
    """Row-wise logsumexp over this weight's classes, one block at a time.

    ``shift`` (batch,) is an upper bound of every logit of its row (the margin heads: ``s``);
    with it each block costs one exp pass and no max. Rows whose sum then falls so low that its
    terms would be subnormal are recomputed with a running max. ``shift=None`` always uses the
    running max (SphereFace, Softmax: their logits have no useful bound). ``negatives`` (with
    ``shift=None``) maps each block's non-target logits before the sum, one pass per block
    (``NegativeBlocks.accumulate``).
    """
    batch, dim = xm.shape
    num = weight.shape[0]
    if num == 0:
        return torch.full((batch,), -math.inf, dtype=compute_dtype, device=xm.device)
    wbuf = torch.empty(block * dim, dtype=xm.dtype, device=xm.device)
    if shift is not None or negatives is not None:
        work = torch.empty(batch * block, dtype=xm.dtype, device=xm.device)
        total = torch.zeros(batch, dtype=compute_dtype, device=xm.device)
        neg = None if shift is None else (-shift).unsqueeze(1)
        run_max = torch.full((batch,), -math.inf, dtype=compute_dtype, device=xm.device)
        for b0 in range(0, num, block):
            b1 = min(b0 + block, num)
            wb, col = _weight_block(weight, inv_norm, b0, b1, xm.dtype, wbuf)
            r = _product(xm, wb, work, b1 - b0)
            rows, cols = block_targets(tgt_local, b0, b1)
            if rows.numel():
                r[rows, cols] = -math.inf  # the target terms are added once, below
            if negatives is None:
                total += kernels.exp_rowsum(r, col, neg)
            else:
                run_max = negatives.accumulate(r, col, run_max, total)
        owned = (tgt_local >= 0).nonzero().squeeze(1)
        if negatives is not None:
            return finish_lse(run_max, total, tgt_logit, owned)
        total[owned] += torch.exp(tgt_logit[owned] - shift[owned])
        lse = shift + total.log()
        # Sums below 2^26 * tiny mean the largest terms were (nearly) subnormal: redo exactly.
        low = (total < torch.finfo(compute_dtype).tiny * 2.0**26).nonzero().squeeze(1)
        if low.numel():
            lse[low] = forward_lse(xm[low], weight, bias, inv_norm, tgt_local[low],
                                   tgt_logit[low], block, None, compute_dtype)
        return lse
    work = torch.empty(batch * block, dtype=compute_dtype, device=xm.device)
    run_max = torch.full((batch,), -math.inf, dtype=compute_dtype, device=xm.device)
    total = torch.zeros(batch, dtype=compute_dtype, device=xm.device)
    for b0 in range(0, num, block):
        b1 = min(b0 + block, num)
        wb, col = _weight_block(weight, inv_norm, b0, b1, xm.dtype, wbuf)
        addend = None if bias is None else bias[b0:b1].unsqueeze(0)
        lg = _logits_into(work[: batch * (b1 - b0)].view(batch, b1 - b0), xm, wb, col, addend)
        run_max = accumulate_block(lg, b0, b1, tgt_local, tgt_logit, run_max, total, negatives)
    return run_max + total.log()


def accumulate_block(lg: Tensor, b0: int, b1: int, tgt_local: Tensor, tgt_logit: Tensor,
                     run_max: Tensor, total: Tensor,
                     negatives: NegativeBlocks | None = None) -> Tensor:
    """One block of the running-max logsumexp; returns the new running max (``total`` updated).

    ``lg`` (clobbered) holds the block's logits of classes [b0, b1): the negatives are mapped,
    the target entries set to ``tgt_logit``, then everything is added to ``total``.
    """
    if negatives is not None:
        negatives.logits_(lg)
    rows, cols = block_targets(tgt_local, b0, b1)
    if rows.numel():
        lg[rows, cols] = tgt_logit[rows]
    new_max = torch.maximum(run_max, lg.amax(1))
    total.mul_(torch.exp(run_max - new_max))
    total += lg.sub_(new_max.unsqueeze(1)).exp_().sum(1)
    return new_max


def backward_blocks(xm: Tensor, weight: Tensor, bias: Tensor | None, inv_norm: Tensor | None,
                    tgt_local: Tensor, tgt_grad: Tensor, block: int, shift: Tensor,
                    compute_dtype: torch.dtype, grad_weight: Tensor,
                    grad_bias: Tensor | None, negatives: NegativeBlocks | None = None) -> Tensor:
    """Second pass: gradients of ``sum_i |g| * CE_i`` wrt ``xm`` (returned) and the weight.

    ``shift = lse - log|g|`` so that one exp gives ``|g| * p`` directly; ``tgt_grad`` (batch,)
    holds the finished gradient at each owned target entry (``|g|(p_y - 1) * dtarget/dcos``).
    ``grad_weight`` (and ``grad_bias``) are written block by block, through the row
    normalisation when ``inv_norm`` is given: ``dw = (g_hat - w_hat <w_hat, g_hat>) / |w|``.
    ``negatives`` replaces the compiled gradient kernel by its own (changed non-target logits).
    """
    batch, dim = xm.shape
    num = weight.shape[0]
    grad_xm = torch.zeros(batch, dim, dtype=compute_dtype, device=xm.device)
    if num == 0:
        return grad_xm
    low = xm.dtype != compute_dtype
    fp16 = xm.dtype == torch.float16
    # g is needed in full precision first
    exact_g = fp16 or grad_bias is not None
    grad_fn = kernels.grad_block if negatives is None else negatives.grad_block
    prod = torch.empty(batch * block, dtype=xm.dtype, device=xm.device)
    work = torch.empty(batch * block, dtype=compute_dtype, device=xm.device) if (
        low and exact_g) else prod
    wbuf = torch.empty(block * dim, dtype=xm.dtype, device=xm.device)
    gwbuf = torch.empty(block * dim, dtype=xm.dtype, device=xm.device) if low else None
    neg = (-shift).unsqueeze(1)
    for b0 in range(0, num, block):
        b1 = min(b0 + block, num)
        n = b1 - b0
        wb, col = _weight_block(weight, inv_norm, b0, b1, xm.dtype, wbuf)
        r = _product(xm, wb, prod, n)
        rows, cols = block_targets(tgt_local, b0, b1)
        if rows.numel():
            r[rows, cols] = -math.inf  # exp gives 0 there; the target gradient is set below
        # g = dL/dz (times 1/|w_j| when normalised: both products then use the raw rows)
        g = grad_fn(r, col, None if bias is None else bias[b0:b1], neg,
                    work[: batch * n].view(batch, n))
        if rows.numel():
            tg = tgt_grad[rows] if col is None else tgt_grad[rows] * col[cols]
            g[rows, cols] = tg.to(g.dtype)
        if grad_bias is not None:  # Softmax: no normalisation, g is dL/dz itself
            torch.sum(g, 0, out=grad_bias[b0:b1])
        gw = grad_weight[b0:b1]
        if fp16:
            scale = float(fp16_gradient_scale(g, xm, wb))
            gm = (g * scale if scale != 1.0 else g).to(xm.dtype)
            grad_xm.add_(torch.mm(gm, wb).to(compute_dtype), alpha=1.0 / scale)
            gw_raw = torch.mm(gm.t(), xm)
            if scale != 1.0:
                gw_raw = gw_raw.to(compute_dtype).mul_(1.0 / scale)
        elif low:
            gm = g if g.dtype == xm.dtype else g.to(xm.dtype)
            grad_xm.add_(torch.mm(gm, wb).to(compute_dtype))
            gw_raw = torch.mm(gm.t(), xm, out=gwbuf[: n * dim].view(n, dim))
        else:
            grad_xm.addmm_(g, wb)
            gw_raw = torch.mm(g.t(), xm, out=gw)
        if col is not None:
            # Through w_hat = w/|w|: dw = g_hat/|w| - w <w, g_hat/|w|> / |w|^2.
            kernels.finish_weight_grad(gw_raw, weight[b0:b1], col, gw)
        elif gw_raw is not gw:
            gw.copy_(gw_raw)
    return grad_xm
