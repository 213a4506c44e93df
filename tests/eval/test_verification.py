"""The k-fold protocol on synthetic scores with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from marginface.eval import VerificationReport, contiguous_folds, verify_scores
from marginface.eval.evaluate import pair_scores


def test_contiguous_folds_match_kfold_sizes():
    folds = contiguous_folds(23, 10)
    assert np.bincount(folds).tolist() == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]
    assert (np.diff(folds) >= 0).all()
    with pytest.raises(ValueError, match="n_folds"):
        contiguous_folds(5, 10)


def test_separable_scores_give_perfect_report():
    rng = np.random.default_rng(0)
    same = np.tile([True] * 30 + [False] * 30, 10)
    scores = np.where(same, rng.uniform(0.6, 1.0, same.size), rng.uniform(-0.2, 0.4, same.size))
    report = verify_scores(scores, same)
    assert report.accuracy_mean == 1.0 and report.accuracy_std == 0.0
    assert report.auc == 1.0 and report.eer == 0.0
    assert report.tar_at_far == {0.1: 1.0, 0.01: 1.0, 0.001: 1.0}
    assert 0.4 <= report.threshold <= 0.6
    assert report.pairs == 600 and report.positives == 300 and report.negatives == 300


def test_known_fold_accuracy():
    # 2 folds of 4 pairs. Fold 0 scores: same 0.9, 0.8; diff 0.3, 0.85.
    # Fold 1: same 0.7, 0.2; diff 0.1, 0.05.
    scores = np.array([0.9, 0.8, 0.3, 0.85, 0.7, 0.2, 0.1, 0.05])
    same = np.array([1, 1, 0, 0, 1, 1, 0, 0], dtype=bool)
    folds = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    report = verify_scores(scores, same, folds=folds, fars=(0.5,))
    # held out 0, trained on fold 1 -> threshold 0.15 (midpoint 0.2/0.1): fold 0: 0.9, 0.8 ok,
    # 0.3 and 0.85 accepted wrongly -> 2/4.
    # held out 1, trained on fold 0: accept {0.9} -> 3/4, accept {0.9,0.85,0.8} -> 3/4,
    # highest wins -> threshold 0.875; fold 1: all below -> 2/4 correct (the two different).
    assert report.fold_thresholds == pytest.approx([0.15, 0.875])
    assert report.fold_accuracies == pytest.approx([0.5, 0.5])
    assert report.accuracy_mean == 0.5 and report.accuracy_std == 0.0


def test_per_fold_score_rows():
    same = np.array([1, 0, 1, 0], dtype=bool)
    folds = np.array([0, 0, 1, 1])
    rows = np.array([[0.9, 0.1, 0.2, 0.8], [0.9, 0.1, 0.8, 0.2]])  # row f used for fold f
    report = verify_scores(rows, same, folds=folds, fars=(0.5,))
    # held out 0 uses row 0: trained on (0.2 same, 0.8 diff) -> threshold 0.8, row 0 fold 0:
    # 0.9 > 0.8 same ok, 0.1 diff ok -> 1.0. Held out 1 uses row 1: trained on fold 0 -> 0.5;
    # fold 1 row 1: 0.8 same ok, 0.2 diff ok -> 1.0
    assert report.fold_accuracies == [1.0, 1.0]
    assert report.auc == 1.0  # held-out scores 0.9, 0.1, 0.8, 0.2
    with pytest.raises(ValueError, match="shape"):
        verify_scores(np.zeros((3, 4)), same, folds=folds)


def test_report_to_dict_is_json():
    same = np.tile([True, False], 50)
    scores = np.linspace(0, 1, 100)
    report = verify_scores(scores, same, skipped=3)
    data = json.loads(json.dumps(report.to_dict()))
    for key in (
        "accuracy_mean",
        "accuracy_std",
        "auc",
        "eer",
        "tar_at_far",
        "threshold",
        "pairs",
        "skipped",
        "threshold_at_far",
    ):
        assert key in data
    assert set(data["tar_at_far"]) == {"0.1", "0.01"} or "0.001" in data["tar_at_far"]
    assert data["skipped"] == 3
    assert isinstance(report, VerificationReport)
    assert "accuracy" in report.summary()


def test_pair_scores_cosine_and_mean_subtraction():
    embeddings = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [1.0, 1.0]])
    pairs = np.array([[0, 1], [2, 3]])
    np.testing.assert_allclose(pair_scores(embeddings, pairs), [0.0, 1.0], atol=1e-12)
    folds = np.array([0, 1])
    rows = pair_scores(embeddings, pairs, folds=folds, subtract_mean=True)
    # fold 0 held out: mean of pair 1's images = (2, 2): (3,3)-(2,2) vs (1,1)-(2,2) -> -1
    assert rows.shape == (2, 2)
    assert rows[0, 1] == pytest.approx(-1.0)
    # fold 1 held out: mean of pair 0's images (0.5, 1): (0.5,-1) vs (-0.5, 1) -> -1
    assert rows[1, 0] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="fold"):
        pair_scores(embeddings, pairs, subtract_mean=True)
