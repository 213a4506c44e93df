"""RunningTopK and exact_search on tied scores: the order of a stable sort of the brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from marginface.identify.running_topk import RunningTopK
from marginface.identify.search import exact_search


def _stable_reference(scores: np.ndarray, k: int):
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), order


def _tied(n, m, d, seed):
    """Gallery rows of small integers / 8 with duplicate rows, and probes with four entries
    +-1 (norm 2, so normalising them is exact): every score is exact in float32, whatever
    the product's summation order, and many scores tie."""
    rng = np.random.default_rng(seed)
    distinct = rng.integers(-2, 3, size=(max(1, n // 3), d)).astype(np.float32) / 8
    gallery = distinct[rng.integers(0, len(distinct), size=n)]
    probes = np.zeros((m, d), np.float32)
    for row in probes:
        row[rng.choice(d, 4, replace=False)] = rng.choice([-1.0, 1.0], 4)
    return torch.from_numpy(gallery), torch.from_numpy(probes)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 50),
    m=st.integers(1, 6),
    k=st.integers(1, 60),  # often larger than the gallery
    gblock=st.integers(1, 70),  # often larger than the whole gallery (a single, partial block)
    pblock=st.integers(1, 4),
    seed=st.integers(0, 10_000),
)
def test_exact_search_on_ties_equals_stable_brute_force(n, m, k, gblock, pblock, seed):
    gallery, probes = _tied(n, m, 6, seed)
    found = exact_search(gallery, probes, k, probe_block=pblock, gallery_block=gblock,
                         select="threshold")
    scores, order = _stable_reference((probes / 2).double().numpy() @ gallery.double().numpy().T,
                                      min(k, n))
    np.testing.assert_array_equal(found.indices, order)
    np.testing.assert_array_equal(found.scores, scores.astype(np.float32))
    assert np.isfinite(found.scores).all() and (found.indices >= 0).all()


@settings(max_examples=30, deadline=None)
@given(
    widths=st.lists(st.integers(0, 9), min_size=1, max_size=6),
    rows=st.integers(1, 4),
    k=st.integers(1, 12),
    seed=st.integers(0, 10_000),
)
def test_running_topk_over_uneven_tiles(widths, rows, k, seed):
    # scores drawn from 4 values: heavy ties across and within tiles
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, size=(rows, sum(widths))).astype(np.float32)
    best = RunningTopK(rows, k)
    start = 0
    for w in widths:
        best.add(torch.from_numpy(scores[:, start : start + w]), start)
        start += w
    kept = min(k, scores.shape[1])
    ref_s, ref_i = _stable_reference(scores, kept)
    np.testing.assert_array_equal(best.indices[:, :kept].numpy(), ref_i)
    np.testing.assert_array_equal(best.scores[:, :kept].numpy(), ref_s)
    # slots beyond the rows seen stay empty
    assert (best.indices[:, kept:] == -1).all() and torch.isinf(best.scores[:, kept:]).all()


def test_running_topk_skips_rows_below_threshold_and_checks_order():
    best = RunningTopK(2, 2)
    best.add(torch.tensor([[5.0, 4.0, 1.0], [0.0, 1.0, 2.0]]), 0)
    best.add(torch.tensor([[4.0, 3.0], [9.0, 1.0]]), 3)  # 4.0 ties row 0's 2nd best: loses
    assert best.indices.tolist() == [[0, 1], [3, 2]]
    assert best.scores.tolist() == [[5.0, 4.0], [9.0, 2.0]]
    with pytest.raises(ValueError, match="gallery order"):
        best.add(torch.zeros(2, 1), 4)
    with pytest.raises(ValueError, match=r"tile must be \(2, b\)"):
        best.add(torch.zeros(3, 1), 5)
    with pytest.raises(ValueError, match="k must be >= 1"):
        RunningTopK(2, 0)


def test_empty_gallery_gives_empty_rows():
    found = exact_search(torch.empty(0, 4), torch.ones(3, 4), 5)
    assert found.indices.shape == (3, 0) and found.scores.shape == (3, 0)
