"""The LFW identification protocol on a small fake LFW tree."""

from __future__ import annotations

import pytest

from marginface.data.lfw_identification import lfw_identification_set


def _tree(root, people):
    for name, count in people.items():
        for k in range(count, 0, -1):  # created out of order: the protocol sorts by name
            path = root / "images" / name / f"{name}_{k:04d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
    (root / "lfw_landmark.txt").write_text("Ann/Ann_0002.jpg " + " ".join(["1"] * 10) + "\n")


def test_gallery_mated_and_nonmated(tmp_path):
    _tree(tmp_path, {"Ann": 3, "Bob": 1, "Cid": 2, "Dan": 1})
    s = lfw_identification_set(tmp_path)
    assert [i.name.rsplit("/", 1)[1] for i in s.gallery] == ["Ann_0001.jpg", "Cid_0001.jpg"]
    assert s.gallery_labels == ["Ann", "Cid"]
    names = [i.name.rsplit("/", 1)[1] for i in s.probes]
    assert names == ["Ann_0002.jpg", "Ann_0003.jpg", "Bob_0001.jpg", "Cid_0002.jpg", "Dan_0001.jpg"]
    assert s.probe_labels == ["Ann", "Ann", "Bob", "Cid", "Dan"] and s.mated == 3
    assert s.probes[0].landmarks is not None and s.probes[1].landmarks is None
    sub = lfw_identification_set(tmp_path, initials=["B", "C"])
    assert sub.gallery_labels == ["Cid"] and sub.probe_labels == ["Bob", "Cid"]


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no images/"):
        lfw_identification_set(tmp_path)
    _tree(tmp_path, {"Bob": 1})
    with pytest.raises(ValueError, match="no person with 2 or more images"):
        lfw_identification_set(tmp_path)
