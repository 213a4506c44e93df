"""Hostile pair sets for evaluate: too few pairs for the folds, only same or only different
pairs. A one-sided set gets a report of what it allows instead of a refusal."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hostile_cli_helpers import (
    BALANCED,
    ONLY_DIFFERENT,
    ONLY_SAME,
    one_line_error,
    run_cli,
    write_small_pair_set,
)
from hypothesis import given
from hypothesis import strategies as st

import marginface.eval.evaluate as evaluate_module
from marginface.data import load_pairs
from marginface.eval.one_sided import one_sided_report, rates_at_threshold


def _evaluate(capsys, root, *extra):
    return run_cli(capsys, "evaluate", root / "tiny.safetensors", "--pairs", root / "pairs.txt",
                   "--out", root / "out", "--no-progress", "--workers", "0", *extra)


@pytest.fixture
def no_embedding(monkeypatch):
    """Fail the test (exit 1, 'internal error') if evaluate gets as far as embedding."""

    def embed(*args, **kwargs):
        raise AssertionError("embedding started before the check")

    monkeypatch.setattr(evaluate_module, "compute_embeddings", embed)


@pytest.mark.fault(kind="pair set", fault="--n-folds larger than the number of pairs, or 1",
                   behaviour="exit 2 before embedding, one line naming --n-folds and the range")
@pytest.mark.parametrize("folds", ["5", "1", "100"])
def test_too_many_folds(folds, tmp_path, capsys, no_embedding):
    root = write_small_pair_set(tmp_path, BALANCED)
    code, _, err = _evaluate(capsys, root, "--n-folds", folds)
    assert code == 2
    one_line_error(err, f"n_folds={folds}", "the 4 pairs", "--n-folds N with 2 <= N <= 4")
    assert not (root / "out").exists()


@pytest.mark.fault(kind="pair set", fault="--n-folds on a set with its own folds (4th column)",
                   behaviour="exit 2 before embedding, one line: the set's own fold count")
def test_n_folds_against_own_folds(tmp_path, capsys, no_embedding):
    root = write_small_pair_set(tmp_path, BALANCED)
    lines = (root / "pairs.txt").read_text().splitlines()
    (root / "pairs.txt").write_text("".join(f"{line} {i % 2}\n" for i, line in enumerate(lines)))
    code, _, err = _evaluate(capsys, root, "--n-folds", "3")
    assert code == 2
    one_line_error(err, "has its own 2 folds", "n_folds=3 (--n-folds)")


@pytest.mark.fault(kind="pair set", fault="small set with --n-folds and --threshold",
                   behaviour="the k-fold report with the folds asked, and the rates at T")
def test_small_set_with_n_folds_and_threshold(tmp_path, capsys):
    root = write_small_pair_set(tmp_path, BALANCED)
    code, out, err = _evaluate(capsys, root, "--n-folds", "2", "--threshold", "0.5")
    assert code == 0, err
    report = json.loads((root / "out" / "report.json").read_text())
    assert report["n_folds"] == 2 and len(report["fold_accuracies"]) == 2
    rates = report["at_threshold"]
    assert rates["threshold"] == 0.5 and 0 <= rates["accuracy"] <= 1
    assert rates["tar"] is not None and rates["far"] is not None
    assert "at threshold 0.5000" in out and (root / "out" / "roc.png").is_file()


@pytest.mark.fault(kind="pair set", fault="only same pairs / only different pairs",
                   behaviour="exit 0: a report of what can be computed (rates at --threshold, "
                   "score range) and what cannot (k-fold accuracy, ROC, TAR@FAR); no roc.png")
@pytest.mark.parametrize(("pairs", "kind"), [(ONLY_SAME, "same"), (ONLY_DIFFERENT, "different")])
def test_one_sided_set_is_reported(pairs, kind, tmp_path, capsys):
    root = write_small_pair_set(tmp_path, pairs)
    code, out, err = _evaluate(capsys, root, "--threshold", "0.2")
    assert code == 0, err
    report = json.loads((root / "out" / "report.json").read_text())
    assert report["one_sided"] is True and report["pairs"] == 4
    assert report["accuracy_mean"] is None and report["auc"] is None
    assert set(report["not_computed"]) == {"k-fold accuracy", "ROC, AUC, EER", "TAR at FAR"}
    rates = report["at_threshold"]
    assert (rates["tar"] is None) == (kind == "different")
    assert (rates["far"] is None) == (kind == "same")
    assert report["score_min"] <= report["score_mean"] <= report["score_max"]
    assert f"all {kind}" in out and "no ROC" in out
    assert not (root / "out" / "roc.png").exists()
    rows = (root / "out" / "scores.csv").read_text().splitlines()
    assert len(rows) == 5


@pytest.mark.fault(kind="pair set", fault="only same pairs, no --threshold",
                   behaviour="the report says a threshold is needed for an accuracy")
def test_one_sided_without_threshold(tmp_path, capsys):
    root = write_small_pair_set(tmp_path, ONLY_SAME)
    code, out, _ = _evaluate(capsys, root)
    assert code == 0
    report = json.loads((root / "out" / "report.json").read_text())
    assert report["at_threshold"] is None
    assert report["not_computed"]["accuracy at a threshold"] == "no threshold given"
    assert "give --threshold T" in out


@pytest.mark.shared
@pytest.mark.fault(kind="pair set", fault="insightface's small_lfw.bin: 10 pairs, all same",
                   behaviour="exit 0 with the one-sided report: TAR at --threshold, no FAR")
def test_small_lfw_bin(shared_dir, tmp_path, capsys):
    import marginface.models as models

    path = shared_dir / "data" / "insightface-bin" / "small_lfw.bin"
    assert load_pairs(path).issame.all()
    model = models.create_model("mobilefacenet", input_size=(112, 112), embedding_dim=16,
                                width=0.25)
    models.save_model(model.eval(), tmp_path / "m.safetensors")
    code, out, err = run_cli(capsys, "evaluate", tmp_path / "m.safetensors", "--pairs", path,
                             "--out", tmp_path / "out", "--no-progress", "--workers", "0",
                             "--threshold", "-1")
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["pairs"] == report["positives"] == 10 and report["negatives"] == 0
    # every cosine exceeds -1 except an exact -1: all same pairs accepted
    assert report["at_threshold"] == {"threshold": -1.0, "accuracy": 1.0, "tar": 1.0,
                                      "far": None}


@pytest.mark.fault(kind="pair set", fault="one-sided set through the library without opt-in",
                   behaviour="a clear UserInputError (the trainer's path), not a ROC error")
def test_library_refuses_one_sided_without_opt_in(tmp_path):
    import marginface.models as models
    from marginface.errors import UserInputError
    from marginface.eval.evaluate import evaluate_model

    root = write_small_pair_set(tmp_path, ONLY_DIFFERENT)
    model = models.load_model(root / "tiny.safetensors")
    with pytest.raises(UserInputError, match="only different pairs"):
        evaluate_model(model, load_pairs(root / "pairs.txt"), progress=False, num_workers=0)


@pytest.mark.fault(kind="pair set", fault="any scores, labels and threshold (hypothesis)",
                   behaviour="accuracy = (TAR P + (1 - FAR) N) / (P + N); TAR/FAR None iff "
                   "no such pair")
@given(scores=st.lists(st.floats(-1, 1), min_size=1, max_size=30),
       data=st.data(), threshold=st.floats(-1.5, 1.5))
def test_rates_at_threshold_agree(scores, data, threshold):
    issame = data.draw(st.lists(st.booleans(), min_size=len(scores), max_size=len(scores)))
    scores, issame = np.array(scores), np.array(issame, dtype=bool)
    rates = rates_at_threshold(scores, issame, threshold)
    positives, negatives = int(issame.sum()), int((~issame).sum())
    accepted_same = 0 if rates.tar is None else rates.tar * positives
    rejected_different = 0 if rates.far is None else (1 - rates.far) * negatives
    assert rates.accuracy == pytest.approx((accepted_same + rejected_different) / len(scores))
    assert (rates.tar is None) == (positives == 0) and (rates.far is None) == (negatives == 0)
    if positives and negatives:
        with pytest.raises(ValueError, match="both"):
            one_sided_report(scores, issame)
