"""product="bf16_filter": the error bound it relies on, and that the search is the float32 top-k."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_running_topk import _stable_reference, _tied

import marginface.identify.bf16_filter as bf16_filter
from marginface.identify.bf16_filter import (
    U_BF16,
    U_FP32,
    Scanner,
    bf16_filter_search,
    score_bound,
)
from marginface.identify.search import exact_search, normalize_rows


def _inputs(kind: str, m: int, b: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 probes (m, d) and rows (b, d): random, cancelling (rows are probes with half the
    signs flipped: true products near 0 from terms of size ~1/d), or one large term followed by
    many small ones (a bf16 accumulator would lose the small ones)."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        q, g = rng.normal(size=(m, d)), rng.normal(size=(b, d)) * rng.uniform(0.1, 10)
    elif kind == "cancel":
        base = rng.normal(size=(max(m, b), d))
        flip = np.where(np.arange(d) % 2 == 0, 1.0, -1.0)
        q = base[:m] * (1 + 1e-3 * rng.normal(size=(m, d)))
        g = base[rng.integers(0, len(base), b)] * flip * rng.choice([-1.0, 1.0], size=(b, 1))
    else:
        q = np.full((m, d), 2.0**-5) * rng.choice([1.0, 1.01], size=(m, d))
        g = np.full((b, d), 2.0**-5) * rng.choice([1.0, 1.02], size=(b, d))
        q[:, 0] = g[:, 0] = 1.0
    return torch.from_numpy(q).float(), torch.from_numpy(g).float()


def _gamma(d: int) -> float:
    return d * U_FP32 / (1 - d * U_FP32)


KINDS = st.sampled_from(["random", "cancel", "big_small"])


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 40), b=st.integers(1, 160), d=st.integers(1, 1024), kind=KINDS,
       seed=st.integers(0, 10_000))
def test_bf16_mm_accumulates_in_float32(m, b, d, kind, seed):
    # the accumulation model of bf16_filter: |s~ - q~.g~| <= u |s~| + gamma sum |q~_i g~_i|
    q, g = (x.bfloat16() for x in _inputs(kind, m, b, d, seed))
    s = torch.mm(q, g.T).double()
    exact = q.double() @ g.double().T
    size = q.double().abs() @ g.double().abs().T
    assert (s - exact).abs().le(U_BF16 * s.abs() + _gamma(d) * size + 2.0**-40).all()


@pytest.mark.parametrize("kind", ["random", "cancel", "big_small"])
@pytest.mark.parametrize("d", [512, 1024])
def test_bf16_mm_bound_at_the_search_tile_shape(kind, d):
    # the shape exact_search multiplies (probes x a 2,048-row block): oneDNN's blocked kernel
    q, g = (x.bfloat16() for x in _inputs(kind, 256, 2048, d, 0))
    s = torch.mm(q, g.T).double()
    err = (s - q.double() @ g.double().T).abs()
    bound = U_BF16 * s.abs() + _gamma(d) * (q.double().abs() @ g.double().abs().T)
    assert err.le(bound + 2.0**-40).all()


def test_a_bf16_accumulator_would_break_the_bound():
    # the check above can fail: 1 + 511 terms of 2^-10 summed in bfloat16 stays 1 (each term
    # is below half an ulp of 1), an error of 0.5 against a bound of ~0.004
    d = 512
    q = torch.full((1, d), 2.0**-5)
    q[0, 0] = 1.0
    exact = float((q.double() ** 2).sum())
    low = torch.tensor(0.0, dtype=torch.bfloat16)
    for x in q[0].bfloat16() ** 2:
        low = low + x  # bf16 accumulation
    assert abs(float(low) - exact) > U_BF16 * abs(float(low)) + _gamma(d) * exact
    s = float(torch.mm(q.bfloat16(), q.bfloat16().T))
    assert abs(s - exact) <= U_BF16 * abs(s) + _gamma(d) * exact


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 20), b=st.integers(1, 100), d=st.integers(1, 1024), kind=KINDS,
       seed=st.integers(0, 10_000))
def test_score_bound_holds_from_float32_inputs(m, b, d, kind, seed):
    # end to end: bf16 score of rounded float32 inputs vs the float32 score f, both against
    # q.g in float64: |s~ - f| <= u |s~| + A(d, |q|, max |g|)
    q, g = _inputs(kind, m, b, d, seed)
    q = normalize_rows(q) * (1 + 1e-7)  # not exactly unit: the bound uses the actual norms
    s = torch.mm(q.bfloat16(), g.bfloat16().T).double()
    f = torch.mm(q, g.T).double()
    exact = q.double() @ g.double().T
    gnorm = float(g.double().norm(dim=1).max())
    a = score_bound(d, q.double().norm(dim=1, keepdim=True), gnorm)
    assert (s - f).abs().le(U_BF16 * s.abs() + a).all()
    assert (f - exact).abs().le(_gamma(d) * q.double().norm(dim=1, keepdim=True) * gnorm).all()


def _unit(n, d, seed):
    return normalize_rows(torch.from_numpy(np.random.default_rng(seed).normal(size=(n, d))))


def _check_exact_topk(gallery, probes, found, k):
    """A valid float32 top-k: the scores are the rows' float32 scores, no other row scores
    higher than the k-th, and equal scores are in index order."""
    q = normalize_rows(probes)
    full = (q.double() @ gallery.double().T).numpy()
    rows = np.take_along_axis(full, found.indices, 1)
    np.testing.assert_allclose(found.scores, rows, atol=2e-6)
    outside = full.copy()
    np.put_along_axis(outside, found.indices, -np.inf, 1)
    assert (outside.max(1, initial=-np.inf) <= rows[:, -1] + 2e-6).all()
    assert (np.diff(found.scores, axis=1) <= 0).all()


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 300), m=st.integers(1, 9), k=st.integers(1, 12), d=st.integers(2, 64),
       extra=st.integers(0, 40), gblock=st.integers(1, 97), pblock=st.integers(1, 5),
       seed=st.integers(0, 10_000))
def test_filtered_search_equals_float32_search(n, m, k, d, extra, gblock, pblock, seed):
    gallery, probes = _unit(n, d, seed), _unit(m, d, seed + 1) * 3.0
    plain = exact_search(gallery, probes, k, gallery_block=gblock)
    found = exact_search(gallery, probes, k, probe_block=pblock, gallery_block=gblock,
                         product="bf16_filter", rerank=min(k, n) + extra)
    np.testing.assert_array_equal(found.indices, plain.indices)  # continuous: no near-ties
    np.testing.assert_allclose(found.scores, plain.scores, atol=1e-6)
    _check_exact_topk(gallery, probes, found, k)
    assert found.scores.dtype == np.float32 and found.indices.dtype == np.int64


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 50), m=st.integers(1, 6), k=st.integers(1, 60),
       gblock=st.integers(1, 70), extra=st.integers(0, 5), seed=st.integers(0, 10_000))
def test_filtered_search_on_ties_equals_stable_brute_force(n, m, k, gblock, extra, seed):
    # every score exact in bf16 and float32 and many tie at the k-th place: the windows
    # overflow small capacities, which double until they hold
    gallery, probes = _tied(n, m, 6, seed)
    found = exact_search(gallery, probes, k, gallery_block=gblock, product="bf16_filter",
                         rerank=min(k, n) + extra)
    scores, order = _stable_reference((probes / 2).double().numpy() @ gallery.double().numpy().T,
                                      min(k, n))
    np.testing.assert_array_equal(found.indices, order)
    np.testing.assert_array_equal(found.scores, scores.astype(np.float32))


def _near_ties(n, d, seed):
    """Rows near one direction: every score is inside one bound's window (~0.024 wide), yet
    ~1e-3 apart, so the float32 order is clear."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=d)
    base /= np.linalg.norm(base)
    rows = base + 0.02 * rng.normal(size=(n, d))
    probes = base + 0.02 * rng.normal(size=(3, d))
    return normalize_rows(torch.from_numpy(rows)), torch.from_numpy(probes)


def test_capacity_doubles_until_the_window_fits():
    gallery, probes = _near_ties(600, 16, 0)
    q = normalize_rows(probes)
    scanner = Scanner(gallery, 128, len(q))
    calls = []
    scan = scanner.scan
    scanner.scan = lambda x, c: calls.append((len(x), c)) or scan(x, c)
    s, i, unresolved = bf16_filter_search(gallery, q, 5, gallery_block=128, capacity=5,
                                          scanner=scanner)
    assert [c for _, c in calls] == [5, 10, 20, 40, 80, 160, 320, 600] and len(unresolved) == 0
    plain = exact_search(gallery, probes, 5)
    np.testing.assert_array_equal(i.numpy(), plain.indices)
    _check_exact_topk(gallery, probes, exact_search(gallery, probes, 5, product="bf16_filter",
                                                    rerank=5), 5)


def test_probes_beyond_the_largest_capacity_get_the_float32_search(monkeypatch):
    gallery, probes = _near_ties(700, 16, 1)
    q = normalize_rows(probes)
    s, i, unresolved = bf16_filter_search(gallery, q, 4, gallery_block=100, capacity=4,
                                          max_capacity=64)
    assert unresolved.tolist() == [0, 1, 2] and (i == -1).all()
    monkeypatch.setattr(bf16_filter, "MAX_CAPACITY", 64)
    found = exact_search(gallery, probes, 4, gallery_block=100, product="bf16_filter", rerank=4)
    plain = exact_search(gallery, probes, 4, gallery_block=100)
    np.testing.assert_array_equal(found.indices, plain.indices)
    np.testing.assert_array_equal(found.scores, plain.scores)  # the same float32 path


def test_zero_probe_ties_every_row_and_takes_the_lowest():
    found = exact_search(_unit(300, 8, 0), torch.zeros(2, 8), 3, product="bf16_filter")
    assert found.indices.tolist() == [[0, 1, 2]] * 2 and (found.scores == 0).all()


def test_filtered_search_arguments():
    gallery = _unit(3, 4, 0)
    found = exact_search(gallery, _unit(2, 4, 1), 10, product="bf16_filter")
    assert found.indices.shape == (2, 3)
    np.testing.assert_array_equal(found.indices, exact_search(gallery, _unit(2, 4, 1), 10).indices)
    empty = exact_search(torch.empty(0, 4), torch.ones(3, 4), 5, product="bf16_filter")
    assert empty.indices.shape == (3, 0) and empty.scores.shape == (3, 0)
    with pytest.raises(ValueError, match="dimension"):
        exact_search(gallery, _unit(2, 5, 1), 1, product="bf16_filter")
    with pytest.raises(ValueError, match="product='bf16_filter' needs a float32 gallery"):
        exact_search(gallery.bfloat16(), _unit(2, 4, 1), 1, product="bf16_filter")
    with pytest.raises(ValueError, match="product must be one of"):
        exact_search(gallery, _unit(2, 4, 1), 1, product="bf16")
    with pytest.raises(ValueError, match=r"rerank must be >= k \(2\)"):
        exact_search(gallery, _unit(2, 4, 1), 2, product="bf16_filter", rerank=1)
