"""Face policies: all, largest, central."""

from __future__ import annotations

import numpy as np
import pytest

from marginface.detect import Face, select_face, select_faces


def _face(x1, y1, x2, y2, score=0.9):
    return Face((x1, y1, x2, y2), score, np.zeros((5, 2)))


def test_policies_pick_the_expected_face():
    big_corner = _face(0, 0, 100, 100)
    small_centre = _face(90, 90, 110, 110)
    faces = [big_corner, small_centre]
    assert select_face(faces, "largest", (200, 200)) is big_corner
    assert select_face(faces, "central", (200, 200)) is small_centre
    assert select_faces(faces, "all", (200, 200)) == faces
    assert select_faces(faces, "largest", (200, 200)) == [big_corner]
    assert select_face([], "central", (200, 200)) is None
    assert select_faces([], "central", (200, 200)) == []


def test_unknown_policy_is_an_error():
    with pytest.raises(ValueError, match="face policy"):
        select_face([], "first", (10, 10))
    with pytest.raises(ValueError, match="select_faces"):
        select_face([], "all", (10, 10))


def test_face_to_dict_rounds_and_lists():
    face = Face((1.234, 2.0, 3.0, 4.0), 0.5, np.arange(10.0).reshape(5, 2))
    d = face.to_dict()
    assert d["box"][0] == 1.23 and d["landmarks"][4] == [8.0, 9.0]
    assert face.area == pytest.approx((3.0 - 1.234) * 2.0)
