"""A tiny deterministic 'face model' and a synthetic pair set for the evaluation tests."""

from __future__ import annotations

import pytest

from face_fixtures import PoolingModel, make_identities  # noqa: F401 (fixtures below)
from marginface.data import write_pairs_list


@pytest.fixture
def pooling_model():
    return PoolingModel()


@pytest.fixture
def synthetic_pairs(tmp_path):
    files = make_identities(tmp_path / "faces")
    rel = {key: path.relative_to(tmp_path).as_posix() for key, path in files.items()}
    lines = []
    for p in range(6):
        lines.append((rel[(p, 0)], rel[(p, 1)], True))
        lines.append((rel[(p, 0)], rel[((p + 1) % 6, 2)], False))
        lines.append((rel[(p, 1)], rel[(p, 2)], True))
        lines.append((rel[(p, 2)], rel[((p + 2) % 6, 0)], False))
    write_pairs_list(tmp_path / "pairs.txt", lines)
    return tmp_path / "pairs.txt"
