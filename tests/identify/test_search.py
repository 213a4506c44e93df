"""exact_search against a brute-force reference (numpy sort), float32 and bfloat16."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from marginface.identify.search import exact_search, normalize_rows, recall_at_k, resolve_product


def _unit(n, d, seed):
    return normalize_rows(torch.from_numpy(np.random.default_rng(seed).normal(size=(n, d))))


def _reference(gallery, probes, k):
    scores = normalize_rows(probes).double() @ gallery.double().T
    order = np.argsort(-scores.numpy(), axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores.numpy(), order, 1), order


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 60),
    m=st.integers(1, 9),
    k=st.integers(1, 12),
    gblock=st.integers(1, 17),
    pblock=st.integers(1, 5),
    seed=st.integers(0, 10_000),
)
def test_blocked_search_equals_brute_force(n, m, k, gblock, pblock, seed):
    gallery, probes = _unit(n, 8, seed), _unit(m, 8, seed + 1) * 3.0  # probes normalised inside
    found = exact_search(gallery, probes, k, probe_block=pblock, gallery_block=gblock)
    scores, order = _reference(gallery, probes, min(k, n))
    np.testing.assert_allclose(found.scores, scores, atol=1e-5)
    np.testing.assert_array_equal(found.indices, order)  # continuous data: no ties
    assert found.scores.dtype == np.float32 and found.indices.dtype == np.int64


def test_bfloat16_search_recall_and_rescored_scores():
    gallery, probes = _unit(5000, 64, 0), _unit(50, 64, 1)
    exact = exact_search(gallery, probes, 10)
    low = exact_search(gallery.bfloat16(), probes, 10, gallery_block=700)
    assert recall_at_k(low.indices, exact.indices) >= 0.95
    # rescored in float32 from the bfloat16 rows: scores are those rows' exact inner products
    rows = gallery.bfloat16().float()[torch.from_numpy(low.indices)]
    direct = torch.einsum("mkd,md->mk", rows, normalize_rows(probes)).numpy()
    np.testing.assert_allclose(low.scores, direct, atol=1e-6)
    assert np.all(np.diff(low.scores, axis=1) <= 0)


def test_k_larger_than_gallery_and_bad_arguments():
    gallery = _unit(3, 4, 0)
    assert exact_search(gallery, _unit(2, 4, 1), 10).indices.shape == (2, 3)
    with pytest.raises(ValueError, match="dimension"):
        exact_search(gallery, _unit(2, 5, 1), 1)
    with pytest.raises(ValueError, match="k must"):
        exact_search(gallery, _unit(2, 4, 1), 0)
    with pytest.raises(ValueError, match="float32/bfloat16"):
        exact_search(gallery.double(), _unit(2, 4, 1), 1)


def test_recall_at_k_by_hand():
    assert recall_at_k(np.array([[1, 2], [3, 4]]), np.array([[2, 5], [4, 3]])) == 0.75
    with pytest.raises(ValueError):
        recall_at_k(np.array([[1]]), np.array([[1], [2]]))



@pytest.mark.parametrize(
    ("rows", "probes", "dtype", "native", "expected"),
    [
        (100_000, 50, torch.float32, True, "bf16_filter"),
        (99_999, 50, torch.float32, True, "float32"),
        (100_000, 49, torch.float32, True, "float32"),
        (100_000, 50, torch.float32, False, "float32"),
        (100_000, 50, torch.bfloat16, True, "float32"),
    ],
)
def test_auto_product_takes_the_filter_only_where_it_was_measured_faster(
    monkeypatch, rows, probes, dtype, native, expected
):
    monkeypatch.setattr("marginface.identify.search.native_bf16", lambda device: native)
    gallery = torch.empty(rows, 8, dtype=dtype)
    assert resolve_product("auto", gallery, probes) == expected
    assert resolve_product("float32", gallery, probes) == "float32"
    with pytest.raises(ValueError, match="product"):
        resolve_product("fast", gallery, probes)


def test_auto_search_is_the_exact_float32_answer_on_a_filtered_size(monkeypatch):
    monkeypatch.setattr("marginface.identify.search.native_bf16", lambda device: True)
    gallery = normalize_rows(torch.randn(100_000, 64, generator=torch.Generator().manual_seed(3)))
    gallery[7] = gallery[5]  # a tie: both paths name the lower row first
    others = torch.randn(49, 64, generator=torch.Generator().manual_seed(4))
    probes = torch.cat([gallery[5:6], others])
    assert resolve_product("auto", gallery, len(probes)) == "bf16_filter"
    auto = exact_search(gallery, probes, 10)
    plain = exact_search(gallery, probes, 10, product="float32")
    np.testing.assert_array_equal(auto.indices, plain.indices)
    # the same float32 dot products, summed in another order (rescoring vs the tile's mm)
    np.testing.assert_allclose(auto.scores, plain.scores, rtol=0, atol=5e-7)
    assert auto.indices[0, 0] == 5 and auto.indices[0, 1] == 7
