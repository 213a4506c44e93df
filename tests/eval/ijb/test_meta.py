"""IJB meta-data readers: the layouts and their errors."""

from __future__ import annotations

import numpy as np
import pytest

from marginface.eval.ijb.meta import (
    read_1n_templates,
    read_face_tid_mid,
    read_landmarks_scores,
    read_template_pairs,
)


def test_readers(tmp_path):
    (tmp_path / "f.txt").write_text("1.jpg 1 69544\n2.jpg 1 69545\n\n3.jpg 5 7\n")
    faces = read_face_tid_mid(tmp_path / "f.txt")
    assert faces.names == ["1.jpg", "2.jpg", "3.jpg"]
    assert faces.templates.tolist() == [1, 1, 5] and faces.medias.tolist() == [69544, 69545, 7]
    (tmp_path / "p.txt").write_text("1 11065 1\n1 11066 0\n")
    t1, t2, label = read_template_pairs(tmp_path / "p.txt")
    assert t1.tolist() == [1, 1] and t2.tolist() == [11065, 11066] and label.tolist() == [1, 0]
    (tmp_path / "l.txt").write_text("1.jpg " + " ".join(str(v) for v in range(10)) + " 0.75\n")
    points, score = read_landmarks_scores(tmp_path / "l.txt")["1.jpg"]
    np.testing.assert_array_equal(points, np.arange(10).reshape(5, 2))
    assert score == pytest.approx(0.75)
    (tmp_path / "g.csv").write_text("TEMPLATE_ID,SUBJECT_ID,FILENAME\n3,9,a\n3,9,b\n1,4,c\n")
    tids, sids = read_1n_templates(tmp_path / "g.csv")
    assert tids.tolist() == [3, 1] and sids.tolist() == [9, 4]


def test_errors_name_file_and_line(tmp_path):
    (tmp_path / "f.txt").write_text("1.jpg 1 2\n2.jpg x 2\n")
    with pytest.raises(ValueError, match=r"f.txt, line 2: 'x' is not an integer"):
        read_face_tid_mid(tmp_path / "f.txt")
    (tmp_path / "p.txt").write_text("1 2 1\n1 2\n")
    with pytest.raises(ValueError, match="p.txt, line 2: expected 3 fields, got 2"):
        read_template_pairs(tmp_path / "p.txt")
    (tmp_path / "p.txt").write_text("1 2 3\n")
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        read_template_pairs(tmp_path / "p.txt")
    (tmp_path / "g.csv").write_text("TEMPLATE_ID,SUBJECT_ID\n3,9\n3,8\n")
    with pytest.raises(ValueError, match="line 3: template 3 has two subjects"):
        read_1n_templates(tmp_path / "g.csv")
    (tmp_path / "g.csv").write_text("T,S\n3,9\n")
    with pytest.raises(ValueError, match="header must name TEMPLATE_ID"):
        read_1n_templates(tmp_path / "g.csv")
    with pytest.raises(FileNotFoundError):
        read_landmarks_scores(tmp_path / "none.txt")
