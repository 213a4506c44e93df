"""McNemar's exact test and Wilson intervals against scipy and by hand; per-pair decisions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from marginface.eval.paired import mcnemar_exact, pair_decisions, wilson_interval
from marginface.eval.verification import contiguous_folds, verify_scores

scipy_stats = pytest.importorskip("scipy.stats")


def test_mcnemar_by_hand():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)  # 2 * (1/2)^5
    assert mcnemar_exact(1, 4) == pytest.approx(2 * 6 / 32)  # 2 * (1 + 5) / 32
    assert mcnemar_exact(3, 3) == 1.0
    with pytest.raises(ValueError, match="discordant"):
        mcnemar_exact(-1, 2)


@given(st.integers(0, 60), st.integers(0, 60))
def test_mcnemar_matches_scipy_binomtest(b, c):
    if b + c == 0:
        return
    expected = scipy_stats.binomtest(b, b + c, 0.5).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9)


def test_wilson_by_hand_and_bounds():
    lo, hi = wilson_interval(540, 600)  # 90 %: the textbook formula, computed here by hand
    z = 1.959963984540054
    p, n = 0.9, 600
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (lo, hi) == pytest.approx((centre - half, centre + half))
    assert 0.87 < lo < 0.9 < hi < 0.925
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


@given(st.integers(1, 400).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_matches_scipy(kn):
    k, n = kn
    ci = scipy_stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_pair_decisions_reproduce_the_fold_accuracies():
    rng = np.random.default_rng(0)
    issame = np.arange(600) % 2 == 0
    scores = rng.normal(0, 1, 600) + 1.2 * issame
    report = verify_scores(scores, issame)
    folds = contiguous_folds(600, 10)
    right = pair_decisions(scores, issame, folds, report.fold_thresholds)
    per_fold = [right[folds == f].mean() for f in range(10)]
    assert per_fold == pytest.approx(report.fold_accuracies)
    assert right.mean() == pytest.approx(report.accuracy_mean)
