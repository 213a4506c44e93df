"""IJB TAR at FAR (nearest / interpolated) and 1:N over G1 and G2, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from marginface.eval.ijb.metrics import (
    ijb_identification,
    tar_at_far_interpolated,
    tar_at_far_nearest,
)

# 4 mated pairs, 4 non-mated pairs. ROC points (fpr, tpr) accepting from the top:
# (0,0) 0.9+ (0,.25) 0.8+ (0,.5) 0.7- (.25,.5) 0.6+ (.25,.75) 0.5- (.5,.75) 0.4- (.75,.75)
# 0.3+ (.75,1) 0.2- (1,1)
SCORES = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.5, 0.4, 0.2])
LABELS = np.array([1, 1, 1, 1, 0, 0, 0, 0])


def test_tar_at_far_by_hand():
    # FAR 0.3: nearest point has fpr 0.25; the first of them (lowest tpr) is (.25, .5)
    assert tar_at_far_nearest(SCORES, LABELS, 0.3) == 0.5
    # FAR 0.1: nearest fpr 0 (first point (0, 0))
    assert tar_at_far_nearest(SCORES, LABELS, 0.1) == 0.0
    # interpolated along the upper envelope (0,.5) (.25,.75) (.5,.75) (.75,1) (1,1)
    assert tar_at_far_interpolated(SCORES, LABELS, 0.1) == pytest.approx(0.5 + 0.1 / 0.25 * 0.25)
    assert tar_at_far_interpolated(SCORES, LABELS, 0.6) == pytest.approx(0.75 + 0.1 / 0.25 * 0.25)


def test_identification_over_two_galleries_by_hand():
    # templates 1..4 with 2-d features; G1 = {1: subject 10}, G2 = {2: subject 20};
    # probes 3 (subject 10) and 4 (subject 20)
    ids = np.array([1, 2, 3, 4])
    s = np.sqrt(0.5)
    feats = np.array([[1.0, 0.0], [0.0, 1.0], [s, s], [0.0, 1.0]])
    result = ijb_identification(
        ids, feats, {"G1": (np.array([1]), np.array([10])), "G2": (np.array([2]), np.array([20]))},
        (np.array([3, 4]), np.array([10, 20])), ranks=(1,), fpirs=(0.5,),
    )
    # G1: probe 3 mated (score s, rank 1), probe 4 non-mated (best score 0): threshold at
    # FPIR 0.5 of 1 non-mated -> k = 0 -> its score 0; TPIR = [s > 0] = 1
    assert result["G1"]["cmc"] == {"1": 1.0} and result["G1"]["tpir_at_fpir"]["0.5"] == 1.0
    # G2: probe 4 mated (score 1), probe 3 non-mated (score s): threshold s, TPIR = [1 > s] = 1
    assert result["G2"]["threshold_at_fpir"]["0.5"] == pytest.approx(s)
    assert result["mean"] == {"cmc": {"1": 1.0}, "tpir_at_fpir": {"0.5": 1.0}}
    # a template without features (every image unreadable) is left out and counted
    skipped = ijb_identification(ids, feats, {"G1": (np.array([1, 9]), np.array([10, 30]))},
                                 (np.array([3, 8]), np.array([10, 40])), ranks=(1,), fpirs=())
    assert skipped["G1"]["skipped_templates"] == 2 and skipped["G1"]["mated"] == 1
