"""Held-out LFW folds: sub-folds with both kinds of pairs; validation folds of people."""

from __future__ import annotations

import numpy as np
import pytest

from marginface.train.real_data import stratified_folds


def test_stratified_folds_put_both_kinds_in_every_fold():
    issame = np.array([True] * 30 + [False] * 30)  # LFW's order inside a fold: same first
    folds = stratified_folds(issame, 10)
    for f in range(10):
        assert issame[folds == f].sum() == 3 and (~issame[folds == f]).sum() == 3
    # within a kind the runs stay contiguous, in the input order
    assert folds[:30].tolist() == sorted(folds[:30].tolist())


@pytest.mark.shared
def test_lfw_fold10_pairs_and_validation_fold(shared_dir):
    from marginface.train.config import EvalSetConfig
    from marginface.train.real_data import LFWPeopleDataset, build_real_pair_set

    lfw = shared_dir / "data" / "lfw"
    pairs = build_real_pair_set(EvalSetConfig(name="t", kind="lfw", path=str(lfw), folds=[10]),
                                (112, 96), where="t")
    assert len(pairs.issame) == 600
    for f in range(10):
        kinds = pairs.issame[pairs.folds == f]
        assert kinds.sum() == 30 and (~kinds).sum() == 30
    train = LFWPeopleDataset(lfw, exclude_fold=10, input_size=(112, 96))
    narrower = LFWPeopleDataset(lfw, exclude_fold=10, input_size=(112, 96), validation_folds=[9])
    assert 0 < narrower.num_classes < train.num_classes
    assert set(narrower.classes) < set(train.classes)
    with pytest.raises(ValueError, match="validation_folds must be in 1..10"):
        LFWPeopleDataset(lfw, exclude_fold=10, input_size=(112, 96), validation_folds=[11])
