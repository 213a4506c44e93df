"""Template pooling against values computed by hand, and its invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marginface.eval.ijb.pooling import image_features, template_features


def test_media_means_summed_then_normalised_by_hand():
    feats = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [5.0, 5.0]])
    templates, medias = np.array([7, 7, 7, 3]), np.array([1, 1, 2, 9])
    ids, pooled = template_features(feats, templates, medias)
    # template 7: media 1 -> mean (2, 0); media 2 -> (0, 2); sum (2, 2) -> (s, s)
    s = np.sqrt(0.5)
    assert ids.tolist() == [3, 7]
    np.testing.assert_allclose(pooled, [[s, s], [s, s]])
    # without media grouping (each image its own media) template 7 would be (4, 2)/|.|
    _, flat = template_features(feats, templates, np.arange(4))
    np.testing.assert_allclose(flat[1], np.array([4.0, 2.0]) / np.sqrt(20))


def test_norm_and_detector_options_by_hand():
    emb = np.array([[3.0, 4.0], [0.0, 2.0]])
    np.testing.assert_allclose(image_features(emb, norm="quality"), emb)
    np.testing.assert_allclose(image_features(emb, norm="normalize"), [[0.6, 0.8], [0, 1]])
    weighted = image_features(emb, norm="normalize", detector_scores=np.array([0.5, 2.0]))
    np.testing.assert_allclose(weighted, [[0.3, 0.4], [0, 2]])
    # quality keeps the norm as the weight: the long (3, 4) dominates the template
    _, q = template_features(image_features(emb), np.array([1, 1]), np.array([1, 2]))
    np.testing.assert_allclose(q[0], np.array([3.0, 6.0]) / np.sqrt(45))
    with pytest.raises(ValueError, match="norm must be"):
        image_features(emb, norm="l1")
    with pytest.raises(ValueError, match="one entry per image"):
        template_features(emb, np.array([1]), np.array([1, 2]))


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 12), st.integers(0, 1000), st.floats(0.1, 10))
def test_invariants(n, seed, scale):
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n, 4))
    templates, medias = rng.integers(0, 3, n), rng.integers(0, 3, n)
    ids, pooled = template_features(feats, templates, medias)
    order = rng.permutation(n)  # image order does not matter
    ids2, pooled2 = template_features(feats[order], templates[order], medias[order])
    assert ids.tolist() == ids2.tolist()
    np.testing.assert_allclose(pooled, pooled2, atol=1e-12)
    _, scaled = template_features(feats * scale, templates, medias)  # one common scale cancels
    np.testing.assert_allclose(scaled, pooled, atol=1e-12)
    norms = np.linalg.norm(pooled, axis=1)
    assert np.all((np.abs(norms - 1) < 1e-9) | (norms == 0))
