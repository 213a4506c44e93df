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
                              records=tmp_path / "records")
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
