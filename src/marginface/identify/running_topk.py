"""A running top-k over score tiles scanned in increasing gallery order, filtered by threshold.

Each probe keeps its ``k`` best (score, gallery index) pairs, ordered by score descending and,
among equal scores, by index ascending (the order of a stable sort of the brute-force scores).
Once ``k`` gallery rows have been seen, a tile entry can only enter a probe's top-k if it is
strictly above that probe's current k-th score: an equal score comes from a later, higher
index and loses the tie. So instead of a full top-k over every tile, :meth:`RunningTopK.add`
takes each row's maximum (one cheap pass over a cache-resident tile), and only the rows whose
maximum beats their threshold gather the few entries above it and merge them. With ``n`` gallery
rows in blocks of ``b``, a random probe has about ``k / j`` such entries in block ``j``, so
after the first blocks almost every row is skipped (about ``k (1 + ln(n / (k b)))`` rows' merges
per probe over the whole scan instead of ``n / b`` full top-k passes).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["RunningTopK", "raise_non_finite_row"]


def raise_non_finite_row(tile: Tensor, offset: int) -> None:
    """Raise the error naming the first gallery row (``offset`` + column) of ``tile`` whose
    score is NaN or infinite."""
    bad = (~torch.isfinite(tile)).any(dim=0).nonzero()[0, 0].item() + offset
    raise ValueError(f"gallery row {bad} gives a non-finite score (NaN or inf values)")


class RunningTopK:
    """The ``k`` best entries of each of ``rows`` probes, updated tile by tile.

    ``scores`` (rows, k) in the tiles' dtype, best first (``-inf`` where fewer than ``k``
    entries were seen) and ``indices`` (rows, k) int64 gallery rows (``-1`` there).
    """

    def __init__(self, rows: int, k: int, dtype: torch.dtype = torch.float32) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self.scores = torch.full((rows, k), -torch.inf, dtype=dtype)
        self.indices = torch.full((rows, k), -1, dtype=torch.int64)
        self.seen = 0

    def add(self, tile: Tensor, offset: int) -> None:
        """Merge ``tile`` (rows, b): the scores of gallery rows ``offset .. offset + b - 1``,
        which must come after every row added before."""
        if tile.dim() != 2 or tile.shape[0] != self.scores.shape[0]:
            raise ValueError(f"tile must be ({self.scores.shape[0]}, b), got {tuple(tile.shape)}")
        if offset < self.seen:
            raise ValueError(f"tiles must come in gallery order: offset {offset} < {self.seen}")
        if tile.shape[1] == 0:
            return
        rowmax = tile.amax(dim=1)  # propagates NaN: a non-finite gallery row is caught here
        if not torch.isfinite(rowmax).all():
            raise_non_finite_row(tile, offset)
        if self.seen >= self.k:
            hit = (rowmax > self.scores[:, -1]).nonzero()[:, 0]
            if len(hit) == 0:
                self.seen = offset + tile.shape[1]
                return
            sub = tile[hit]
            mask = sub > self.scores[hit, -1:]
        else:
            # fewer than k seen: keep whatever reaches the k-th best of (kept + tile), ties
            # included (the stable merge below orders them by index)
            hit = torch.arange(tile.shape[0])
            sub = tile
            both = torch.cat([self.scores, sub.to(self.scores.dtype)], 1)
            kth = both.topk(self.k, dim=1).values[:, -1:]
            mask = sub >= kth
        self.seen = offset + tile.shape[1]
        self._merge(hit, sub, mask, offset)

    def _merge(self, hit: Tensor, sub: Tensor, mask: Tensor, offset: int) -> None:
        """Stable top-k of each hit row's kept entries followed by its masked tile entries
        (which are in index order, all after the kept ones)."""
        r, c = mask.nonzero(as_tuple=True)  # row-major: each row's entries by ascending index
        counts = torch.bincount(r, minlength=len(hit))
        width = self.k + int(counts.max())
        starts = counts.cumsum(0) - counts
        pos = self.k + torch.arange(len(r)) - starts[r]
        s = torch.full((len(hit), width), -torch.inf, dtype=self.scores.dtype)
        i = torch.full((len(hit), width), -1, dtype=torch.int64)
        s[:, : self.k] = self.scores[hit]
        i[:, : self.k] = self.indices[hit]
        s[r, pos] = sub[r, c].to(s.dtype)
        i[r, pos] = c + offset
        order = s.sort(dim=1, descending=True, stable=True).indices[:, : self.k]
        self.scores[hit] = s.gather(1, order)
        self.indices[hit] = i.gather(1, order)
