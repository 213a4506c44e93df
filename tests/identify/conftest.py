"""A pooling 'face model' and one-folder-per-identity image trees for the identify tests."""

from __future__ import annotations

import pytest

from face_fixtures import PoolingModel, make_identities


@pytest.fixture
def pooling_model():
    return PoolingModel()


@pytest.fixture
def people_dir(tmp_path):
    """tmp/people/p0..p4 with 3 noisy crops each; tmp/probes with one more crop of p0..p4
    (same generator: the probes are p*/2.png's twins) and an unreadable file."""
    files = make_identities(tmp_path / "all", people=5, per_person=4)
    people, probes = tmp_path / "people", tmp_path / "probes"
    probes.mkdir()
    for (p, k), path in files.items():
        target = probes / f"p{p}.png" if k == 3 else people / f"p{p}" / f"{k}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
    (probes / "broken.png").write_bytes(b"not an image")
    return people, probes
