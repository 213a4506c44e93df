"""docs/reliability.md is generated from tests/hostile: every hostile test has a row there."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def hostile_tests() -> list[str]:
    names = []
    for path in sorted((ROOT / "tests" / "hostile").glob("test_*.py")):
        tree = ast.parse(path.read_text())
        names += [f"{path.name}::{node.name}" for node in ast.walk(tree)
                  if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]
    return names


def test_every_hostile_test_is_in_the_reliability_table():
    doc = (ROOT / "docs" / "reliability.md").read_text()
    missing = [name for name in hostile_tests() if f"`{name}" not in doc]
    assert not missing, ("regenerate docs/reliability.md with tools/reliability_table.py; "
                         f"missing rows: {missing[:10]}")
