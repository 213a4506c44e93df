"""Exact float32 top-k that filters with bfloat16 products and rescores the survivors in float32.

Per gallery block the float32 rows are rounded to bfloat16 into one reused buffer and multiplied
with the bfloat16-rounded probes (``torch.mm``: oneDNN's AVX512-BF16 kernels, float32
accumulation, output rounded to bfloat16). A running top-``c`` of those scores keeps candidates;
the float32 scores of the candidates inside a proven window decide the answer.

**Bound.** q (a probe) and g (a gallery row) are float32 vectors of dimension D, q~ and g~ their
round-to-nearest bfloat16 values (unit roundoff u = 2^-8, so ``|q~_i - q_i| <= u |q_i|``), s~ the
bfloat16 score and f the float32 score (any summation order; float32 roundoff v = 2^-24,
gamma = D v / (1 - D v)). With S = q.g exactly:

- input rounding: ``|q~.g~ - S| <= sum |q_i g_i| |(1+a_i)(1+b_i) - 1| <= (2u + u^2) |q| |g|``;
- float32 accumulation of exact bf16 x bf16 products (16 significant bits fit in float32):
  ``|acc - q~.g~| <= gamma sum |q~_i g~_i| <= gamma (1+u)^2 |q| |g|``;
- output rounding to bfloat16: ``|s~ - acc| <= u |s~|`` (round to nearest: acc = s~ (1 + e));
- the float32 score: ``|f - S| <= gamma |q| |g|``.

So ``|s~ - f| <= u |s~| + A`` with ``A = (2u + u^2 + gamma ((1+u)^2 + 1)) |q| G + 2^-40``, G the
largest gallery row norm. |q| is computed in float64; G is the largest float32 row norm of the
scanned blocks times ``1 + 2 (D + 2) v`` (a float32 norm's relative error is at most
``(D/2 + 1) v``; the factor 2 is headroom, not needed by the proof). 2^-40 covers the float64
evaluation of the bounds and flushed subnormals (oneDNN's bf16 instructions treat inputs and
outputs below 2^-126 as zero: at most ~3 D 2^-126 in all). The accumulation model is checked by
tests/identify/test_bf16_filter.py (the bf16 ``mm`` against the float64 product of the rounded
inputs, hypothesis over random and cancelling inputs, D up to 1024).

**Selection.** With ``U(s) = s + u|s| + A`` and ``L(s) = s - u|s| - A`` (both increasing in s),
let K~ be the k-th best bf16 score: k rows have f >= L(K~), so a row with ``U(s~) < L(K~)`` has
f strictly below k rows' and is not in the float32 top-k (whatever the tie rule). The running
top-c never drops a row that scored above its final c-th score T_c, so if ``U(T_c) < L(K~)``
(or c >= N) every row of the window ``U(s~) >= L(K~)`` was kept, and the float32 top-k of the
window (ties to the lower index) is the float32 top-k of the gallery. Probes failing the check
are scanned again with twice the capacity, up to ``max_capacity``; those still failing are
returned as unresolved, for the plain float32 search.
"""

from __future__ import annotations

import torch
from torch import Tensor

from marginface.identify.running_topk import RunningTopK

__all__ = ["MAX_CAPACITY", "Scanner", "bf16_filter_search", "candidate_scores",
           "default_capacity", "score_bound"]

U_BF16 = 2.0**-8
U_FP32 = 2.0**-24
SLACK = 2.0**-40
# past this many candidates per probe the rescans cost more than the plain float32 search
MAX_CAPACITY = 4096


def score_bound(dim: int, probe_norm: Tensor | float, gallery_norm: float) -> Tensor | float:
    """``A`` of the module docstring: ``|s~ - f| <= u |s~| + A`` for every gallery row."""
    gamma = dim * U_FP32 / (1 - dim * U_FP32)
    alpha = 2 * U_BF16 + U_BF16**2 + gamma * ((1 + U_BF16) ** 2 + 1)
    return alpha * probe_norm * gallery_norm + SLACK


def _upper(s: Tensor, a: Tensor) -> Tensor:
    return s + U_BF16 * s.abs() + a


def _lower(s: Tensor, a: Tensor) -> Tensor:
    return s - U_BF16 * s.abs() - a


class Scanner:
    """Scans the gallery in blocks for a set of probes; remembers the largest row norm."""

    def __init__(self, gallery: Tensor, gallery_block: int, rows: int) -> None:
        self.gallery, self.block = gallery, gallery_block
        self.low = torch.empty(gallery_block, gallery.shape[1], dtype=torch.bfloat16)
        self.tile = torch.empty(rows * gallery_block, dtype=torch.bfloat16)
        self.norm: float | None = None

    def scan(self, q: Tensor, capacity: int) -> RunningTopK:
        """bf16 scores of ``q`` (bf16 probes) against every row, top-``capacity`` kept."""
        best = RunningTopK(len(q), capacity, torch.bfloat16)
        norm = 0.0
        for g0 in range(0, self.gallery.shape[0], self.block):
            block = self.gallery[g0 : g0 + self.block]
            low = self.low[: len(block)]
            low.copy_(block)  # round to nearest even
            if self.norm is None and len(block):
                norm = max(norm, torch.linalg.vector_norm(block, dim=1).max().item())
            tile = self.tile[: len(q) * len(block)].view(len(q), len(block))
            torch.mm(q, low.T, out=tile)
            best.add(tile, g0)  # names a non-finite row
        if self.norm is None:
            dim = self.gallery.shape[1]
            self.norm = norm * (1 + 2 * (dim + 2) * U_FP32)
        return best


def candidate_scores(gallery: Tensor, probes: Tensor, candidates: Tensor,
                     chunk: int = 16) -> Tensor:
    """Float32 scores (M, c) of each probe against its ``candidates`` (M, c) gallery rows (read in
    the gallery's dtype, multiplied in float32), in chunks of probes so that the gathered rows
    stay a few MiB (peak memory)."""
    scores = torch.empty(candidates.shape)
    for c0 in range(0, len(probes), chunk):
        ids = candidates[c0 : c0 + chunk]
        rows = gallery[ids.reshape(-1)].float().reshape(*ids.shape, -1)
        torch.bmm(rows, probes[c0 : c0 + chunk, :, None], out=scores[c0 : c0 + chunk, :, None])
    return scores


def _rescore(gallery: Tensor, probes: Tensor, candidates: Tensor, k: int):
    """Float32 scores of the candidate rows, best ``k`` first, ties to the lower index."""
    candidates = candidates.sort(dim=1).values  # index order: a stable sort keeps lower first
    scores = candidate_scores(gallery, probes, candidates)
    order = scores.sort(dim=1, descending=True, stable=True).indices[:, :k]
    return scores.gather(1, order), candidates.gather(1, order)


def bf16_filter_search(
    gallery: Tensor,
    probes: Tensor,
    k: int,
    *,
    gallery_block: int,
    capacity: int,
    max_capacity: int | None = None,
    scanner: Scanner | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Float32 top-``k`` of ``probes`` (M, D) float32 (normalised) in the float32 ``gallery``.

    Returns ``scores`` (M, k), ``indices`` (M, k) and ``unresolved``: the probe rows whose
    check still failed at ``max_capacity`` (default ``MAX_CAPACITY``) candidates; their result
    rows are left at -inf / -1.
    """
    n, m = gallery.shape[0], len(probes)
    max_capacity = MAX_CAPACITY if max_capacity is None else max_capacity
    if capacity < k:
        raise ValueError(f"rerank must be >= k ({k}), got {capacity}")
    scanner = scanner or Scanner(gallery, gallery_block, m)
    q = probes.to(torch.bfloat16)
    out_s = torch.full((m, k), -torch.inf)
    out_i = torch.full((m, k), -1, dtype=torch.int64)
    todo = torch.arange(m)
    c = min(capacity, n)
    while len(todo):
        best = scanner.scan(q[todo], c)
        norms = probes[todo].double().norm(dim=1, keepdim=True)
        a = score_bound(gallery.shape[1], norms, scanner.norm)
        s = best.scores.double()
        low_k = _lower(s[:, k - 1 : k], a)
        window = _upper(s, a) >= low_k  # a prefix of each row (scores descending)
        ok = torch.ones(len(todo), dtype=torch.bool) if c >= n else ~window[:, -1]
        if ok.any():
            width = int(window[ok].sum(1).max())
            done = todo[ok]
            out_s[done], out_i[done] = _rescore(gallery, probes[done],
                                                best.indices[ok, :width], k)
        todo = todo[~ok]
        if c >= min(n, max_capacity):
            break
        c = min(2 * c, n, max(max_capacity, capacity))
    return out_s, out_i, todo


def default_capacity(k: int) -> int:
    """Candidates kept per probe on the first scan: ``4k + 64``."""
    return 4 * k + 64

