"""Hostile verification .bin files: issame values that are not booleans, wrong containers,
truncated pickles."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from marginface.data.binset import read_bin, write_bin

JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 16


def _bin(tmp_path, payload) -> str:
    path = tmp_path / "set.bin"
    path.write_bytes(pickle.dumps(payload, protocol=4))
    return path


@pytest.mark.fault(kind="verification .bin", fault="issame value 'no' / 0.5 / None / 2",
                   behaviour="ValueError naming the entry and its value (never read as True)")
@pytest.mark.parametrize("value", ["no", 0.5, None, 2, b"yes"])
def test_issame_must_be_boolean(tmp_path, value):
    path = _bin(tmp_path, ([JPEG] * 4, [True, value]))
    with pytest.raises(ValueError, match=r"set.bin: issame_list\[1\] is .*not a boolean"):
        read_bin(path)


@pytest.mark.fault(kind="verification .bin", fault="issame as numpy bools or 0/1 integers",
                   behaviour="read as the booleans they are")
def test_issame_numpy_and_integers(tmp_path):
    path = _bin(tmp_path, ([JPEG] * 6, np.array([True, False, True])))
    assert read_bin(path)[1].tolist() == [True, False, True]
    path = _bin(tmp_path, ([JPEG] * 4, [1, 0]))
    assert read_bin(path)[1].tolist() == [True, False]


@pytest.mark.fault(kind="verification .bin", fault="issame_list is a string / a number; bins "
                   "is a number", behaviour="ValueError naming the file and the container")
@pytest.mark.parametrize("payload, pattern", [(([JPEG] * 4, "yes"), "issame_list is str"),
                                              (([JPEG] * 4, 7), "issame_list is int"),
                                              ((7, [True, True]), "bins is int")],
                         ids=["issame-str", "issame-int", "bins-int"])
def test_wrong_containers(tmp_path, payload, pattern):
    with pytest.raises(ValueError, match=rf"set.bin: {pattern}"):
        read_bin(_bin(tmp_path, payload))


@pytest.mark.fault(kind="verification .bin", fault="truncated pickle / empty file",
                   behaviour="ValueError: not a verification .bin pickle")
@pytest.mark.parametrize("cut", [0, 1, 50])
def test_truncated_bin(tmp_path, cut):
    path = tmp_path / "set.bin"
    write_bin(path, [JPEG] * 4, [True, False])
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(ValueError, match="set.bin is not a verification .bin pickle"):
        read_bin(path)
