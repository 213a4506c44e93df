"""Pairs lists and LFW files: parsing, line numbers in errors, missing images named or counted."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from marginface.data import (
    load_lfw,
    load_pairs,
    load_pairs_list,
    read_landmarks,
    read_lfw_pairs,
    read_lfw_people,
    write_landmarks,
    write_pairs_list,
)


def _image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (30, 30), (5, 6, 7)).save(path)


def test_pairs_list_round_trip(tmp_path):
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        _image(tmp_path / "img" / name)
    write_pairs_list(
        tmp_path / "p.txt", [("img/a.jpg", "img/b.jpg", True), ("img/a.jpg", "img/c.jpg", False)]
    )
    pairs = load_pairs(tmp_path / "p.txt")
    assert len(pairs) == 2 and len(pairs.images) == 3  # a.jpg shared
    assert pairs.issame.tolist() == [True, False] and pairs.folds is None
    assert pairs.pairs.tolist() == [[0, 1], [0, 2]]


def test_pairs_list_errors_name_line_and_image(tmp_path):
    _image(tmp_path / "a.jpg")
    (tmp_path / "bad.txt").write_text("# comment\na.jpg a.jpg 1\na.jpg a.jpg yes\n")
    with pytest.raises(ValueError, match="bad.txt, line 3"):
        load_pairs_list(tmp_path / "bad.txt")
    (tmp_path / "miss.txt").write_text("a.jpg a.jpg 1\na.jpg ghost.jpg 0\n")
    with pytest.raises(FileNotFoundError, match="ghost.jpg.*miss.txt, line 2"):
        load_pairs_list(tmp_path / "miss.txt")
    skipped = load_pairs_list(tmp_path / "miss.txt", skip_bad_images=True)
    assert len(skipped) == 1 and skipped.skipped == 1
    assert skipped.skipped_images == [str(tmp_path / "ghost.jpg")]
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_pairs(tmp_path / "nothing.txt")


def _mini_lfw(root):
    people = {"Ann_A": 3, "Bob_B": 1, "Cid_C": 2}
    for name, count in people.items():
        for k in range(1, count + 1):
            _image(root / "images" / name / f"{name}_{k:04d}.jpg")
    (root / "pairs.txt").write_text(
        "2\t1\nAnn_A\t1\t2\nAnn_A\t1\tBob_B\t1\nCid_C\t1\t2\nBob_B\t1\tCid_C\t2\n"
    )
    (root / "people.txt").write_text("2\n2\nAnn_A\t3\nBob_B\t1\n1\nCid_C\t2\n")
    write_landmarks(root / "lfw_landmark.txt", {"Ann_A/Ann_A_0001.jpg": np.arange(10.0)})
    return root


def test_lfw_files(tmp_path):
    root = _mini_lfw(tmp_path / "lfw")
    entries = read_lfw_pairs(root / "pairs.txt")
    assert entries[1] == ("Ann_A/Ann_A_0001.jpg", "Bob_B/Bob_B_0001.jpg", False, 0)
    assert [e[3] for e in entries] == [0, 0, 1, 1]
    assert read_lfw_people(root / "people.txt") == [[("Ann_A", 3), ("Bob_B", 1)], [("Cid_C", 2)]]
    pairs = load_pairs(f"lfw:{root}")
    assert len(pairs) == 4 and pairs.folds.tolist() == [0, 0, 1, 1]
    assert pairs.issame.tolist() == [True, False, True, False]
    first = pairs.images[pairs.pairs[0, 0]]
    np.testing.assert_array_equal(first.landmarks, np.arange(10.0).reshape(5, 2))
    assert sum(item.landmarks is not None for item in pairs.images) == 1


def test_lfw_errors(tmp_path):
    root = _mini_lfw(tmp_path / "lfw")
    (root / "pairs.txt").write_text("2\t1\nAnn_A\t1\t2\nAnn_A\t1\tBob_B\nCid_C\t1\t2\nX\t1\tY\t2\n")
    with pytest.raises(ValueError, match="pairs.txt, line 3: expected 'name1 i name2 j'"):
        read_lfw_pairs(root / "pairs.txt")
    (root / "pairs.txt").write_text("2\t1\nAnn_A\t1\t2\n")
    with pytest.raises(ValueError, match="announces 4 pair lines, found 1"):
        read_lfw_pairs(root / "pairs.txt")
    (root / "pairs.txt").write_text("1\t1\nAnn_A\t1\t9\nAnn_A\t1\tBob_B\t1\n")
    with pytest.raises(FileNotFoundError, match="Ann_A_0009.jpg"):
        load_lfw(root)
    counted = load_lfw(root, skip_bad_images=True)
    assert len(counted) == 1 and counted.skipped == 1
    (root / "lfw_landmark.txt").write_text("a.jpg 1 2 3\n")
    with pytest.raises(ValueError, match="lfw_landmark.txt, line 1"):
        read_landmarks(root / "lfw_landmark.txt")
    (root / "people.txt").write_text("2\n1\nAnn_A\t3\n")
    with pytest.raises(ValueError, match="people.txt"):
        read_lfw_people(root / "people.txt")


@pytest.mark.shared
def test_real_lfw_protocol_files(shared_dir):
    lfw = shared_dir / "data" / "lfw"
    entries = read_lfw_pairs(lfw / "pairs.txt")
    assert len(entries) == 6000
    assert np.bincount([e[3] for e in entries]).tolist() == [600] * 10
    assert sum(e[2] for e in entries) == 3000
    people = read_lfw_people(lfw / "people.txt")
    assert len(people) == 10
    # each fold's pairs use only that fold's people
    fold_of = {name: f for f, rows in enumerate(people) for name, _ in rows}
    for a, b, _, fold in entries:
        assert fold_of[a.split("/")[0]] == fold_of[b.split("/")[0]] == fold
    landmarks = read_landmarks(lfw / "lfw_landmark.txt")
    assert len(landmarks) == 13233
