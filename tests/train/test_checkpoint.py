"""Atomic checkpoints: verified on load, corrupt ones named, the previous good one kept."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from marginface.train.checkpoint import (
    CheckpointError,
    CheckpointKeeper,
    capture_rng_state,
    checkpoint_name,
    latest_good_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    restore_rng_state,
    save_checkpoint,
)


def test_round_trip_and_no_temp_left(tmp_path):
    state = {"step": 3, "w": torch.arange(6.0).view(2, 3)}
    path = save_checkpoint(state, tmp_path / checkpoint_name(3))
    loaded = load_checkpoint(path)
    assert loaded["step"] == 3 and torch.equal(loaded["w"], state["w"])
    assert [p.name for p in tmp_path.iterdir()] == ["step_00000003.ckpt"]


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = save_checkpoint({"step": 1}, tmp_path / "a.ckpt")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert list(tmp_path.glob(".*.tmp")) == []


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_corrupt_checkpoint_is_a_clear_error(tmp_path, damage):
    path = save_checkpoint({"step": 1, "w": torch.ones(1000)}, tmp_path / "x.ckpt")
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
        match = "truncated or partial"
    elif damage == "flip":
        data[-100] ^= 0xFF
        path.write_bytes(bytes(data))
        match = "sha256 mismatch"
    else:
        path.write_bytes(b"hello world")
        match = "not a marginface checkpoint"
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_latest_good_and_prune(tmp_path):
    for step in (10, 20, 30, 40):
        save_checkpoint({"step": step}, tmp_path / checkpoint_name(step))
    (tmp_path / ".step_00000050.ckpt.abc.tmp").write_bytes(b"partial")  # a crash mid-write
    assert prune_checkpoints(tmp_path, 2) == [tmp_path / checkpoint_name(s) for s in (10, 20)]
    assert [s for s, _ in list_checkpoints(tmp_path)] == [30, 40]
    assert not list(tmp_path.glob(".*.tmp"))
    path, state = latest_good_checkpoint(tmp_path)
    assert state["step"] == 40
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="previous good checkpoint .*step_00000030.ckpt"):
        latest_good_checkpoint(tmp_path)
    assert load_checkpoint(tmp_path / checkpoint_name(30))["step"] == 30
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        latest_good_checkpoint(tmp_path / "empty")


def test_rng_state_round_trip():
    state = capture_rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1))
    restore_rng_state(state)
    b = (random.random(), np.random.rand(), torch.rand(1))
    assert a[:2] == b[:2] and torch.equal(a[2], b[2])


def test_keeper_keeps_the_newest_and_named(tmp_path):
    keeper = CheckpointKeeper(tmp_path / "checkpoints", keep=2)
    for step in (1, 2, 3):
        keeper.save({"step": step}, step)
    keeper.save_named({"step": 3}, "best.ckpt")
    assert [s for s, _ in list_checkpoints(keeper.directory)] == [2, 3]
    assert load_checkpoint(keeper.directory / "best.ckpt")["step"] == 3
