"""The head comparison's committed per-head records: reused only under the same recipe."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "bench_lfw_unrestricted", ROOT / "benchmarks" / "bench_lfw_unrestricted.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_args(tmp_path: Path, **changes) -> argparse.Namespace:
    args = argparse.Namespace(config=ROOT / "configs" / "lfw_unrestricted_compare.yaml",
                              lfw=tmp_path / "lfw", people_file=None, steps=3600, overrides=[],
                              records=tmp_path / "records", started_at_commit="abc")
    for key, value in changes.items():
        setattr(args, key, value)
    return args


def write_record(args: argparse.Namespace, head: str, fingerprint: str) -> None:
    args.records.mkdir(parents=True, exist_ok=True)
    record = {"head": head, "recipe_sha256": fingerprint, "commit": "abc",
              "row": {"accuracy_mean": 0.9}}
    (args.records / f"{head}.json").write_text(json.dumps(record))


def test_speed_overrides_keep_the_fingerprint(bench, tmp_path):
    plain = bench.recipe_fingerprint(make_args(tmp_path), "cosface")
    threads = make_args(tmp_path, overrides=["train.threads=1", "data.num_workers=0"])
    assert bench.recipe_fingerprint(threads, "cosface") == plain


@pytest.mark.parametrize("changes", [{"steps": 3200}, {"overrides": ["optimizer.lr=0.05"]}])
def test_recipe_changes_change_the_fingerprint(bench, tmp_path, changes):
    plain = bench.recipe_fingerprint(make_args(tmp_path), "cosface")
    assert bench.recipe_fingerprint(make_args(tmp_path, **changes), "cosface") != plain
    assert bench.recipe_fingerprint(make_args(tmp_path), "arcface") != plain


def test_a_record_is_reused_only_under_its_recipe(bench, tmp_path):
    args = make_args(tmp_path)
    assert bench.recorded_row(args, "cosface") is None
    write_record(args, "cosface", bench.recipe_fingerprint(args, "cosface"))
    assert bench.recorded_row(args, "cosface") == {"accuracy_mean": 0.9}
    assert bench.recorded_row(make_args(tmp_path, steps=3200), "cosface") is None
    write_record(args, "arcface", "0" * 64)
    assert bench.recorded_row(args, "arcface") is None


def full_row(correct: list[int]) -> dict:
    right = sum(correct)
    return {"paper": {"scale": 64.0}, "steps": 3600, "images_per_second": 50.0,
            "train_seconds": 4000.0, "precision": "bf16", "compiled": True,
            "curve": [[400, 0.8], [3600, right / len(correct)]],
            "accuracy_mean": right / len(correct), "accuracy_std": 0.01, "auc": 0.95,
            "eer": 0.08, "tar_at_far_1e-2": 0.7, "pairs": len(correct), "pairs_right": right,
            "ci95": [0.85, 0.95], "correct": correct}


def test_recorded_only_reports_a_partial_comparison_from_the_records(bench, tmp_path):
    pytest.importorskip("matplotlib")
    args = make_args(tmp_path, heads=["softmax", "cosface", "arcface"], recorded_only=True,
                     out=tmp_path / "result.json", plot=tmp_path / "plot.png", no_doc=True,
                     quick=False, budget_out=tmp_path / "budget.json")
    # cosface right on 12 pairs softmax missed, softmax on 2 that cosface missed
    softmax = [1] * 80 + [0] * 12 + [1] * 2 + [0] * 6
    cosface = [1] * 80 + [1] * 12 + [0] * 2 + [0] * 6
    for head, correct in (("softmax", softmax), ("cosface", cosface)):
        args.records.mkdir(parents=True, exist_ok=True)
        record = {"head": head, "recipe_sha256": bench.recipe_fingerprint(args, head),
                  "row": full_row(correct)}
        (args.records / f"{head}.json").write_text(json.dumps(record))
    assert bench.compare(args) == 0
    result = json.loads(args.out.read_text())
    assert list(result["heads"]) == ["softmax", "cosface"]
    assert result["not_yet_run"] == ["arcface"]
    m = result["mcnemar"]
    assert (m["best_margin_head"], m["only_best_right"], m["only_softmax_right"]) == (
        "cosface", 12, 2)
    assert m["p_value"] == pytest.approx(0.01293, abs=1e-4)  # exact binomial, 2 of 14
    assert "PARTIAL" in bench.doc_text(result, bench.table(result))
    assert args.plot.stat().st_size > 0


def test_recorded_only_without_any_record_fails(bench, tmp_path):
    args = make_args(tmp_path, heads=["softmax"], recorded_only=True, out=tmp_path / "r.json",
                     plot=tmp_path / "p.png", no_doc=True, quick=False,
                     budget_out=tmp_path / "budget.json")
    assert bench.compare(args) == 1
    assert not args.out.exists()
