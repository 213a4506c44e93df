"""Threshold metrics on hand-computable scores, and against brute force (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marginface.eval.roc import (
    best_accuracy_threshold,
    equal_error_rate,
    far_levels,
    roc_auc,
    roc_curve,
    tar_at_far,
    threshold_at_far,
)

SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
SAME = np.array([1, 1, 0, 1, 0, 0], dtype=bool)


def test_best_threshold_hand_case():
    # cuts: accept top 2 -> 2 + 3 = 5 correct; top 4 -> 3 + 2 = 5; the higher threshold wins
    threshold, accuracy = best_accuracy_threshold(SCORES, SAME)
    assert threshold == pytest.approx(0.75)
    assert accuracy == pytest.approx(5 / 6)


def test_best_threshold_never_cuts_between_ties():
    scores = np.array([0.5, 0.5, 0.1])
    same = np.array([1, 0, 0], dtype=bool)
    threshold, accuracy = best_accuracy_threshold(scores, same)
    # can only accept both 0.5 (2/3 correct) or none (2/3): none wins (highest threshold)
    assert accuracy == pytest.approx(2 / 3)
    assert threshold == pytest.approx(0.5)
    assert ((scores > threshold) == same).mean() == pytest.approx(accuracy)


def test_roc_auc_eer_hand_case():
    fpr, tpr, _ = roc_curve(SCORES, SAME)
    np.testing.assert_allclose(fpr, [0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1])
    # pairs (pos, neg) ordered correctly: 0.9, 0.8 beat all 3 negatives, 0.6 beats 2 -> 8/9
    assert roc_auc(SCORES, SAME) == pytest.approx(8 / 9)
    # FAR = FRR = 1/3 on the segment between (0, 2/3) and (1/3, 2/3)... crossing at 1/3
    assert equal_error_rate(SCORES, SAME) == pytest.approx(1 / 3)


def test_perfect_separation():
    scores = np.array([0.9, 0.8, 0.1, 0.2])
    same = np.array([1, 1, 0, 0], dtype=bool)
    assert roc_auc(scores, same) == 1.0
    assert equal_error_rate(scores, same) == 0.0
    assert best_accuracy_threshold(scores, same) == (pytest.approx(0.5), 1.0)


def test_tar_at_far_hand_case():
    # 10 negatives 0.0..0.9, positives 0.35, 0.75, 0.95
    negatives = np.arange(10) / 10
    positives = np.array([0.35, 0.75, 0.95])
    scores = np.r_[negatives, positives]
    same = np.r_[np.zeros(10, bool), np.ones(3, bool)]
    # FAR 0.1 allows 1 false accept: threshold = 2nd highest negative = 0.8
    assert threshold_at_far(scores, same, 0.1) == pytest.approx(0.8)
    assert tar_at_far(scores, same, 0.1) == (pytest.approx(1 / 3), pytest.approx(0.8))
    # FAR 0.3 allows 3: threshold 0.6 -> 0.75, 0.95 accepted
    assert tar_at_far(scores, same, 0.3)[0] == pytest.approx(2 / 3)
    # FAR 0.01 allows none: threshold = highest negative 0.9
    assert tar_at_far(scores, same, 0.01) == (pytest.approx(1 / 3), pytest.approx(0.9))
    assert threshold_at_far(scores, same, 1.0) == -math.inf
    with pytest.raises(ValueError, match="far"):
        threshold_at_far(scores, same, 0.0)


def test_far_levels_extend_while_pairs_allow():
    assert far_levels((1e-1, 1e-2, 1e-3), 3000) == [1e-1, 1e-2, 1e-3]
    assert far_levels((1e-1, 1e-2, 1e-3), 20000) == pytest.approx([1e-1, 1e-2, 1e-3, 1e-4])
    assert far_levels((1e-1,), 1000) == pytest.approx([1e-1, 1e-2, 1e-3])


def test_bad_scores_rejected():
    with pytest.raises(ValueError, match="not finite"):
        roc_auc(np.array([0.1, np.nan]), np.array([1, 0], bool))
    with pytest.raises(ValueError, match="both kinds"):
        roc_auc(np.array([0.1, 0.2]), np.array([1, 1], bool))
    with pytest.raises(ValueError, match="empty"):
        best_accuracy_threshold(np.array([]), np.array([], bool))


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(0, 6), min_size=4, max_size=30),
    st.lists(st.booleans(), min_size=4, max_size=30),
)
def test_against_brute_force(levels, flags):
    n = min(len(levels), len(flags))
    scores = np.array(levels[:n], float) / 6
    same = np.array(flags[:n], bool)
    # best threshold: brute force over every candidate threshold
    candidates = np.r_[scores, scores - 1e-3, -1.0]
    brute = max(((scores > t) == same).mean() for t in candidates)
    threshold, accuracy = best_accuracy_threshold(scores, same)
    assert accuracy == pytest.approx(brute)
    assert ((scores > threshold) == same).mean() == pytest.approx(accuracy)
    if same.all() or not same.any():
        return
    # AUC = Mann-Whitney with ties counted half
    pos, neg = scores[same], scores[~same]
    mw = ((pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None])).mean()
    assert roc_auc(scores, same) == pytest.approx(mw)
    # threshold at FAR really keeps FAR <= far, and no lower candidate does
    for far in (0.1, 0.3, 0.5):
        t = threshold_at_far(scores, same, far)
        assert (neg > t).mean() <= far + 1e-12
        lower = neg[neg < t]
        if lower.size:
            assert (neg > lower.max()).mean() > far
    eer = equal_error_rate(scores, same)
    assert 0.0 <= eer <= 1.0
