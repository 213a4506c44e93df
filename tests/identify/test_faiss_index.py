"""FAISS backend (skipped without faiss-cpu): flat equals exact search; IVF / HNSW recall."""

from __future__ import annotations

import numpy as np
import pytest

from marginface.identify.faiss_index import build_faiss_index, faiss_search
from marginface.identify.search import exact_search, normalize_rows, recall_at_k

pytest.importorskip("faiss")


def _data(n, m, d=32):
    rng = np.random.default_rng(0)
    return normalize_rows(rng.normal(size=(n, d))), rng.normal(size=(m, d)).astype(np.float32)


def test_flat_index_equals_exact_search():
    gallery, probes = _data(3000, 40)
    exact = exact_search(gallery, probes, 10)
    flat = faiss_search(build_faiss_index(gallery.numpy(), "flat", block=700), probes, 10)
    np.testing.assert_array_equal(flat.indices, exact.indices)
    np.testing.assert_allclose(flat.scores, exact.scores, atol=1e-5)


def test_approximate_indexes_recall():
    gallery, _ = _data(4000, 0)
    # probes near gallery rows, as a face near its enrolled template (uniformly random probes
    # are IVF's worst case: benchmarks/bench_search.py reports that one)
    noise = np.random.default_rng(1).normal(scale=0.05, size=(50, 32)).astype(np.float32)
    probes = gallery[:50].numpy() + noise
    exact = exact_search(gallery, probes, 10)
    ivf = build_faiss_index(gallery.numpy(), "ivf", nlist=64, nprobe=4)
    found = faiss_search(ivf, probes, 10)
    assert found.indices.shape == (50, 10)
    assert recall_at_k(found.indices[:, :1], exact.indices[:, :1]) >= 0.95  # the mates
    ivf.nprobe = 64  # every list: exhaustive, so exact
    assert recall_at_k(faiss_search(ivf, probes, 10).indices, exact.indices) == 1.0
    hnsw = faiss_search(build_faiss_index(gallery.numpy(), "hnsw"), probes, 10)
    assert recall_at_k(hnsw.indices, exact.indices) >= 0.9


def test_bad_kind():
    with pytest.raises(ValueError, match="kind must be one of"):
        build_faiss_index(np.zeros((2, 4), np.float32), "lsh")


def test_gallery_search_with_faiss_backends():
    import torch

    from marginface.identify import Gallery

    gallery, _ = _data(300, 0)
    labels = torch.arange(300) // 3  # 100 identities, 3 rows each ("all" mode)
    g = Gallery([f"id{i}" for i in range(100)], gallery, labels, "f" * 64, {}, "all", None)
    probes = gallery[::7].numpy()
    names, scores = g.search(probes, 5)
    for backend in ("faiss-flat", "faiss-hnsw"):
        other_names, other_scores = g.search(probes, 5, backend=backend)
        assert other_names == names
        np.testing.assert_allclose(other_scores, scores, atol=1e-5)
    with pytest.raises(ValueError, match="backend must be"):
        g.search(probes, 5, backend="annoy")
