"""Identification metrics against values computed by hand; invariants with hypothesis."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marginface.eval.identification import (
    cmc_curve,
    det_curve,
    fpir_fnir_at,
    identification_report,
    mate_ranks,
    open_set_scores,
    threshold_at_fpir,
    tpir_at_fpir,
)

# gallery identities 10, 20, 30; probes: three mated (10, 20, 30) and two non-mated (99, 98)
SCORES = np.array(
    [
        [0.9, 0.2, 0.1],  # mate 10 rank 1 (0.9)
        [0.6, 0.5, 0.1],  # mate 20 rank 2 (0.5)
        [0.3, 0.2, 0.1],  # mate 30 rank 3 (0.1)
        [0.7, 0.1, 0.0],  # non-mated, best 0.7
        [0.2, 0.4, 0.3],  # non-mated, best 0.4
    ]
)
PROBES = np.array([10, 20, 30, 99, 98])
GALLERY = np.array([10, 20, 30])


def test_ranks_and_cmc_by_hand():
    ranks = mate_ranks(SCORES, PROBES, GALLERY)
    assert ranks.tolist() == [1, 2, 3, 0, 0]
    np.testing.assert_allclose(cmc_curve(ranks, 4), [1 / 3, 2 / 3, 1.0, 1.0])
    # a tie with the mate counts against it
    assert mate_ranks(np.array([[0.5, 0.5]]), np.array([2]), np.array([1, 2])).tolist() == [2]


def test_open_set_by_hand():
    mated, nonmated = open_set_scores(SCORES, PROBES, GALLERY)
    np.testing.assert_allclose(mated, [0.9, -np.inf, -np.inf])  # only rank-1 mates count
    np.testing.assert_allclose(nonmated, [0.7, 0.4])
    assert fpir_fnir_at(mated, nonmated, 0.5) == pytest.approx((0.5, 2 / 3))
    # FPIR 0.5 of 2 non-mated: one may pass -> threshold is the 2nd highest, 0.4
    assert threshold_at_fpir(nonmated, 0.5) == pytest.approx(0.4)
    assert threshold_at_fpir(nonmated, 0.1) == pytest.approx(0.7)
    assert tpir_at_fpir(mated, nonmated, 0.1) == pytest.approx((1 / 3, 0.7))
    fpir, fnir, thresholds = det_curve(mated, nonmated)
    np.testing.assert_allclose(thresholds, [-np.inf, 0.4, 0.7])
    np.testing.assert_allclose(fpir, [1.0, 0.5, 0.0])
    np.testing.assert_allclose(fnir, [2 / 3, 2 / 3, 2 / 3])
    report = identification_report(SCORES, PROBES, GALLERY, fpirs=(0.5, 0.1))
    assert report.cmc == {"1": pytest.approx(1 / 3), "5": 1.0, "10": 1.0}
    assert report.threshold_at_fpir == {"0.5": pytest.approx(0.4), "0.1": pytest.approx(0.7)}
    assert (report.mated, report.nonmated, report.gallery) == (3, 2, 3)


def test_bad_shapes_are_errors():
    with pytest.raises(ValueError, match="must be"):
        mate_ranks(SCORES[:, :2], PROBES, GALLERY)
    with pytest.raises(ValueError, match="unique"):
        mate_ranks(SCORES, PROBES, np.array([10, 10, 30]))
    with pytest.raises(ValueError, match="mated probe"):
        cmc_curve(np.array([0, 0]))


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 8),
    st.integers(1, 30),
    st.integers(0, 10_000),
    st.sampled_from([0.5, 0.1, 0.01]),
)
def test_invariants(gallery_size, probes, seed, fpir):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(probes, gallery_size))
    labels = rng.integers(0, gallery_size + 3, probes)  # some labels are not enrolled
    gallery = np.arange(gallery_size)
    ranks = mate_ranks(scores, labels, gallery)
    assert np.all((ranks >= 0) & (ranks <= gallery_size))
    if (ranks > 0).any():
        curve = cmc_curve(ranks, gallery_size)
        assert np.all(np.diff(curve) >= 0) and curve[-1] == 1.0
        # rank-1 identification rate equals the argmax agreeing with the label
        mated = ranks > 0
        assert curve[0] == pytest.approx((gallery[scores.argmax(1)] == labels)[mated].mean())
    mated_s, nonmated = open_set_scores(scores, labels, gallery)
    if nonmated.size and mated_s.size:
        tpir, t = tpir_at_fpir(mated_s, nonmated, fpir)
        achieved, fnir = fpir_fnir_at(mated_s, nonmated, t)
        assert achieved <= fpir + 1e-12 and tpir == pytest.approx(1 - fnir)
        # monotone: raising the threshold never raises FPIR or TPIR (lowers the DET's FPIR)
        f, n, _ = det_curve(mated_s, nonmated)
        assert np.all(np.diff(f) <= 0) and np.all(np.diff(n) >= 0)
