"""Exact top-k cosine search over a gallery, blocked so that memory stays bounded.

Scores are inner products of L2-normalised rows (cosine similarity). The gallery is scanned in
blocks of ``gallery_block`` rows against ``probe_block`` probes at a time, and a running top-k is
merged after each block (by default :class:`~marginface.identify.running_topk.RunningTopK`,
which merges only tile entries above a probe's current k-th score; ``select="topk"`` takes a
full top-k of every tile), so the only temporary beyond the gallery itself is one
``probe_block x gallery_block`` score tile and the block's packed copy (each at most 2% of the
gallery's size, and the tile at most 8 MiB, so that it stays in the CPU's last-level cache).

bfloat16: the gallery is held (and multiplied) in bfloat16 without a float32 copy; the score
tiles are then rounded to bfloat16 (8 significant bits), which reorders close neighbours. The
running top-k therefore keeps ``rerank`` candidates per probe and the final top-k rescores them
in float32 from the same bfloat16 rows (float32 accumulation), so the answer differs from the
float32 search only by the rows' own quantisation.

``product="bf16_filter"`` (float32 gallery): an exact float32 search whose tiles are bfloat16
products of the rounded rows, with a proven error bound deciding which candidates to rescore in
float32 (:mod:`marginface.identify.bf16_filter`). ``product="auto"`` (the default) takes it where
it was measured faster: a CPU with native bfloat16, a gallery of at least 100,000 rows and at least
50 probes (:func:`resolve_product`; figures in docs/performance.md, "Identification search").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from marginface.devices import native_bf16
from marginface.identify.bf16_filter import (
    Scanner,
    bf16_filter_search,
    candidate_scores,
    default_capacity,
)
from marginface.identify.running_topk import RunningTopK, raise_non_finite_row
from marginface.validation import check_choice

__all__ = ["PRODUCTS", "SEARCH_DTYPES", "SearchResult", "exact_search", "normalize_rows",
           "recall_at_k", "resolve_product"]

SEARCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# a score tile of 1,000 probes x 2,048 rows: in the last-level cache while the running top-k reads
# it (at 1M x 512 this was faster than the 2%-of-gallery tiles: docs/performance.md)
TILE_BYTES = 8 * 2**20
PRODUCTS = ("auto", "float32", "bf16_filter")
# where the bf16 filter beat the plain float32 product (1 thread, k = 10): 1.13x at 100,000 rows x
# 1,000 probes, 1.06x at 50 probes, 0.90x at 10; 0.69x or less below 20,000 rows
FILTER_MIN_ROWS = 100_000
FILTER_MIN_PROBES = 50


@dataclass
class SearchResult:
    """``scores`` (M, k) float32, highest first, and ``indices`` (M, k) int64 gallery rows."""

    scores: np.ndarray
    indices: np.ndarray


def normalize_rows(x: Tensor | np.ndarray, eps: float = 1e-12) -> Tensor:
    """Rows scaled to unit L2 norm (float32; all-zero rows stay zero)."""
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.dim() != 2:
        raise ValueError(f"embeddings must be 2-D (N, D), got shape {tuple(x.shape)}")
    return x / x.norm(dim=1, keepdim=True).clamp_min(eps)


def resolve_product(product: str, gallery: Tensor, probes: int) -> str:
    """``product`` itself, or for ``"auto"``: ``"bf16_filter"`` for a float32 gallery of at least
    100,000 rows searched by at least 50 probes on a CPU with native bfloat16, where it was
    measured faster; ``"float32"`` otherwise. Both are exact, with ties to the lower index."""
    check_choice("product", product, PRODUCTS)
    if product != "auto":
        return product
    fits = (gallery.dtype == torch.float32 and gallery.shape[0] >= FILTER_MIN_ROWS
            and probes >= FILTER_MIN_PROBES)
    return "bf16_filter" if fits and native_bf16(gallery.device) else "float32"


def _merge(best_s: Tensor, best_i: Tensor, s: Tensor, i: Tensor, k: int) -> tuple[Tensor, Tensor]:
    scores = torch.cat([best_s, s], 1)
    indices = torch.cat([best_i, i], 1)
    top = scores.topk(min(k, scores.shape[1]), dim=1)
    return top.values, indices.gather(1, top.indices)


def _rescore(gallery: Tensor, probes: Tensor, candidates: Tensor, k: int):
    """Float32 scores of the candidate rows (read from the bf16 gallery), best ``k`` first."""
    scores = candidate_scores(gallery, probes, candidates, chunk=64)
    top, order = scores.topk(k, dim=1)
    return top, candidates.gather(1, order)


def exact_search(
    gallery: Tensor,
    probes: Tensor | np.ndarray,
    k: int = 10,
    *,
    probe_block: int = 1024,
    gallery_block: int | None = None,
    rerank: int | None = None,
    select: str = "threshold",
    product: str = "auto",
) -> SearchResult:
    """Top-``k`` gallery rows by inner product for each probe row (exact, blocked).

    ``gallery`` (N, D) float32 or bfloat16, rows already normalised; ``probes`` (M, D) are
    normalised here and cast to the gallery's dtype. ``rerank`` (bfloat16 gallery, default
    ``2k + 8``; or ``product="bf16_filter"``, below) is the number of candidates rescored in
    float32; see the module docstring.
    ``gallery_block`` defaults to the rows whose score tile is at most 8 MiB (as float32) and at
    most 2% of the gallery's bytes, as is the block's own copy (the budget clamped to 1-64 MiB):
    the tile stays cache-resident, and the search's memory within 10% of the gallery's.
    ``select``: ``"threshold"`` (:class:`RunningTopK`: only entries above a probe's k-th score
    are merged; ties broken by the lower gallery index) or ``"topk"`` (a full top-k of every
    tile, then merged; ties in any order). The threshold path was the faster on a quiet machine
    (docs/performance.md, "Identification search").
    ``product="bf16_filter"`` (float32 gallery only): bf16 products of the rounded rows filter
    and the candidates are rescored in float32; still exact, as the bound
    ``|s~ - f| <= 2^-8 |s~| + A`` (A ~ 0.0079 |q| max|g| at D = 512) decides which rows can be
    in the top-k (:mod:`~marginface.identify.bf16_filter`); ``rerank`` is then the first
    capacity (default ``4k + 64``), doubled for probes whose window did not fit. The result is
    the float32 top-k with ties to the lower index (``select`` is not used).
    ``product="auto"``: ``"bf16_filter"`` where it was measured faster (:func:`resolve_product`),
    else ``"float32"``.
    """
    if gallery.dim() != 2 or gallery.dtype not in SEARCH_DTYPES.values():
        raise ValueError(
            f"gallery must be a 2-D float32/bfloat16 tensor, got {gallery.dtype} "
            f"{tuple(gallery.shape)}"
        )
    probes = normalize_rows(probes)
    if probes.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"probes have dimension {probes.shape[1]}, the gallery {gallery.shape[1]}"
        )
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    check_choice("select", select, ("topk", "threshold"))
    product = resolve_product(product, gallery, probes.shape[0])  # checks the name too
    if product == "bf16_filter" and gallery.dtype != torch.float32:
        raise ValueError(f"product='bf16_filter' needs a float32 gallery, got {gallery.dtype} "
                         "(a bfloat16 gallery is multiplied in bfloat16 already)")
    n, m = gallery.shape[0], probes.shape[0]
    if gallery_block is None:
        budget = min(max(0.02 * gallery.numel() * gallery.element_size(), 2**20), 64 * 2**20)
        # both the score tile (probes x block) and the block itself (block x D: the matmul
        # may pack a copy of it) stay within the budget
        widest = max(min(m, probe_block), gallery.shape[1])
        rows = min(int(budget / gallery.element_size() / widest),
                   TILE_BYTES // (4 * min(m, probe_block)))
        # a multiple of 64: the tile's row stride stays aligned (2,097 columns ran the float32
        # product ~25% slower than 2,048 here)
        gallery_block = max(64, rows // 64 * 64)
    if probe_block < 1 or gallery_block < 1:
        raise ValueError("probe_block and gallery_block must be >= 1")
    k = min(k, n)
    if k == 0:  # an empty gallery: every probe has no match
        return SearchResult(np.empty((m, 0), np.float32), np.empty((m, 0), np.int64))
    if product == "bf16_filter":
        return _filtered(gallery, probes, k, probe_block, gallery_block, rerank)
    low = gallery.dtype == torch.bfloat16
    keep = min(n, rerank if rerank is not None else 2 * k + 8) if low else k
    if keep < k:
        raise ValueError(f"rerank must be >= k ({k}), got {rerank}")
    return _plain(gallery, probes, k, probe_block, gallery_block, keep, select)


def _plain(gallery: Tensor, probes: Tensor, k: int, probe_block: int, gallery_block: int,
           keep: int, select: str) -> SearchResult:
    """The search in the gallery's dtype (``probes`` normalised, arguments checked)."""
    n, m = gallery.shape[0], probes.shape[0]
    low = gallery.dtype == torch.bfloat16
    out_s = torch.empty(m, k)
    out_i = torch.empty(m, k, dtype=torch.int64)
    buffer = torch.empty(min(m, probe_block) * gallery_block, dtype=gallery.dtype)
    with torch.inference_mode():
        for p0 in range(0, m, probe_block):
            p = probes[p0 : p0 + probe_block]
            q = p.to(gallery.dtype)
            best = RunningTopK(len(p), keep, gallery.dtype) if select == "threshold" else None
            best_s = torch.full((len(p), 0), -torch.inf, dtype=gallery.dtype)
            best_i = torch.empty((len(p), 0), dtype=torch.int64)
            for g0 in range(0, n, gallery_block):
                block = gallery[g0 : g0 + gallery_block]
                # one reused buffer: a fresh tile per block fragments the heap (RSS creeps up)
                tile = buffer[: len(p) * len(block)].view(len(p), len(block))
                torch.mm(q, block.T, out=tile)
                if best is not None:
                    best.add(tile, g0)
                else:
                    top = tile.topk(min(keep, tile.shape[1]), dim=1)
                    if not torch.isfinite(top.values).all():  # topk ranks NaN first
                        raise_non_finite_row(tile, g0)
                    best_s, best_i = _merge(best_s, best_i, top.values, top.indices + g0, keep)
            if best is not None:
                best_s, best_i = best.scores, best.indices
            if low:
                best_s, best_i = _rescore(gallery, p, best_i, k)
            out_s[p0 : p0 + len(p)] = best_s.float()
            out_i[p0 : p0 + len(p)] = best_i
    return SearchResult(out_s.numpy(), out_i.numpy())


def _filtered(gallery: Tensor, probes: Tensor, k: int, probe_block: int, gallery_block: int,
              rerank: int | None) -> SearchResult:
    """The ``product="bf16_filter"`` search; probes whose window outgrew the largest capacity
    get the plain float32 search."""
    m = probes.shape[0]
    capacity = rerank if rerank is not None else default_capacity(k)
    out_s = torch.empty(m, k)
    out_i = torch.empty(m, k, dtype=torch.int64)
    scanner = Scanner(gallery, gallery_block, min(m, probe_block))
    with torch.inference_mode():
        for p0 in range(0, m, probe_block):
            p = probes[p0 : p0 + probe_block]
            s, i, unresolved = bf16_filter_search(gallery, p, k, gallery_block=gallery_block,
                                                  capacity=capacity, scanner=scanner)
            if len(unresolved):
                plain = _plain(gallery, p[unresolved], k, probe_block, gallery_block, k,
                               "threshold")
                s[unresolved] = torch.from_numpy(plain.scores)
                i[unresolved] = torch.from_numpy(plain.indices)
            out_s[p0 : p0 + len(p)], out_i[p0 : p0 + len(p)] = s, i
    return SearchResult(out_s.numpy(), out_i.numpy())


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean fraction of each probe's exact top-k rows (``exact`` (M, k)) that ``found`` (M, k')
    also returns: the recall at k of an approximate search against exact search."""
    found, exact = np.asarray(found), np.asarray(exact)
    if found.shape[0] != exact.shape[0] or exact.ndim != 2 or exact.shape[1] == 0:
        raise ValueError(f"found {found.shape} and exact {exact.shape} must both be (M, k)")
    hits = [len(set(f.tolist()) & set(e.tolist())) for f, e in zip(found, exact, strict=True)]
    return float(np.sum(hits) / exact.size)
