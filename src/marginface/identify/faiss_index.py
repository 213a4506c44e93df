"""Optional FAISS backend (``pip install marginface[faiss]``, i.e. ``faiss-cpu``).

Inner-product indexes over L2-normalised rows (cosine): ``"flat"`` (``IndexFlatIP``: exact),
``"ivf"`` (``IndexIVFFlat``: k-means into ``nlist`` lists, ``nprobe`` of them searched) and
``"hnsw"`` (``IndexHNSWFlat`` with the inner-product metric: a graph of ``m`` links per node,
``ef_search`` candidates). The approximate ones are judged by their recall at k against exact
search (:func:`marginface.identify.search.recall_at_k`; ``benchmarks/bench_search.py``).
faiss is imported when an index is built, never at import time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from marginface.identify.search import SearchResult, normalize_rows

__all__ = ["FAISS_KINDS", "faiss_available", "build_faiss_index", "faiss_search"]

FAISS_KINDS = ("flat", "ivf", "hnsw")


def faiss_available() -> bool:
    """Whether ``faiss`` can be imported."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise ImportError(
            "the FAISS backend needs faiss-cpu: pip install 'marginface[faiss]'"
        ) from None
    return faiss


def build_faiss_index(
    vectors: np.ndarray,
    kind: str = "flat",
    *,
    nlist: int | None = None,
    nprobe: int = 16,
    m: int = 32,
    ef_search: int = 128,
    block: int = 65536,
) -> Any:
    """An index of ``vectors`` (N, D) (normalised here), added ``block`` rows at a time.

    ``nlist`` defaults to ~4 sqrt(N) lists (the usual rule of thumb), trained on at most
    256 rows per list.
    """
    if kind not in FAISS_KINDS:
        raise ValueError(f"kind must be one of {FAISS_KINDS}, got {kind!r}")
    faiss = _faiss()
    n, dim = vectors.shape
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = ef_search
    else:
        nlist = nlist or max(1, min(n, int(4 * np.sqrt(n))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).permutation(n)[: min(n, 256 * nlist)]
        index.train(_unit(vectors[np.sort(sample)]))
        index.nprobe = min(nprobe, nlist)
    for start in range(0, n, block):
        index.add(_unit(vectors[start : start + block]))
    return index


def _unit(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(normalize_rows(np.asarray(x, np.float32)).numpy())


def faiss_search(index: Any, probes: np.ndarray, k: int = 10) -> SearchResult:
    """Top-``k`` rows of ``index`` for each probe (normalised here); missing hits are -1."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    scores, indices = index.search(_unit(probes), min(k, index.ntotal))
    return SearchResult(scores.astype(np.float32), indices.astype(np.int64))
