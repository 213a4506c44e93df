"""marginface.typed: the one config checker (training YAML, Caffe solvers)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from marginface.typed import from_mapping


@dataclass
class Inner:
    rate: float = 0.1
    steps: list[int] = field(default_factory=list)


@dataclass
class Outer:
    name: str
    inner: Inner = field(default_factory=Inner)
    size: tuple[int, int] = (1, 1)


def test_nested_values_checked_and_converted():
    out = from_mapping(Outer, {"name": "a", "inner": {"rate": 1, "steps": [1, 2]}, "size": [2, 3]})
    assert out.inner.rate == 1.0 and isinstance(out.inner.rate, float)
    assert out.inner.steps == [1, 2] and out.size == (2, 3)


@pytest.mark.parametrize("raw,message", [
    ({"name": "a", "colour": 1}, "unknown config key 'root.colour'"),
    ({"name": "a", "inner": {"steps": [1.5]}}, r"root.inner.steps\[0\]: expected an int"),
    ({"name": 3}, "root.name: expected a string"),
    ({"name": "a", "size": [1]}, "root.size: expected 2 items"),
])
def test_errors_name_the_dotted_path(raw, message):
    with pytest.raises(ValueError, match=message):
        from_mapping(Outer, raw, "root")


def test_numbers_written_as_strings_only_when_allowed():
    raw = {"name": "a", "inner": {"rate": "1e-3"}}
    assert from_mapping(Outer, raw).inner.rate == 1e-3  # YAML 1.1 reads 1e-3 as a string
    with pytest.raises(ValueError, match="inner.rate: expected a number"):
        from_mapping(Outer, raw, numeric_strings=False)
