"""marginface.atomic: a write that fails halfway leaves the old file whole and no temp file."""

from __future__ import annotations

import os

import pytest
import torch

from marginface.atomic import atomic_path, atomic_write, atomic_write_bytes, atomic_write_text
from marginface.caffe.caffemodel import LayerBlobs, read_caffemodel, write_caffemodel
from marginface.models import create_model, load_model, save_model
from marginface.train.checkpoint import load_checkpoint, save_checkpoint


def test_writes_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "a.bin"
    atomic_write_bytes(target, b"ab", memoryview(b"cd"))
    assert target.read_bytes() == b"abcd"
    atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n"
    assert os.listdir(target.parent) == ["a.bin"]


def test_failure_halfway_keeps_old_file(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="halfway"), atomic_write(target, "w") as handle:
        handle.write("half of the new")
        raise RuntimeError("halfway")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_failure_in_named_writer_keeps_old_file(tmp_path):
    target = tmp_path / "plot.png"
    target.write_bytes(b"old")
    with pytest.raises(OSError, match="disk full"), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise OSError("disk full")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["plot.png"]
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and os.listdir(tmp_path) == ["plot.png"]


def test_bad_mode_rejected(tmp_path):
    with pytest.raises(ValueError, match="mode"), atomic_write(tmp_path / "x", "a"):
        pass


def _fail_fsync(monkeypatch):
    def broken(fd):
        raise OSError("injected fsync failure")

    monkeypatch.setattr(os, "fsync", broken)


def test_model_checkpoint_and_caffemodel_writers_fail_cleanly(tmp_path, monkeypatch):
    model = create_model("mobilefacenet", input_size=(32, 32), embedding_dim=8)
    model_path = tmp_path / "m.safetensors"
    save_model(model, model_path)
    ckpt = save_checkpoint({"step": 1}, tmp_path / "c.ckpt")
    caffemodel = tmp_path / "w.caffemodel"
    write_caffemodel(caffemodel, [LayerBlobs("fc", "InnerProduct", [torch.ones(2, 3).numpy()])])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    _fail_fsync(monkeypatch)
    with pytest.raises(OSError, match="injected"):
        save_model(model, model_path)
    with pytest.raises(OSError, match="injected"):
        save_checkpoint({"step": 2}, ckpt)
    with pytest.raises(OSError, match="injected"):
        write_caffemodel(caffemodel, [])
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert load_checkpoint(ckpt)["step"] == 1
    assert load_model(model_path).config.embedding_dim == 8
    assert read_caffemodel(caffemodel)[0].name == "fc"


def test_atomic_paths_replace_as_a_set(tmp_path):
    from marginface.atomic import atomic_paths

    data, index = tmp_path / "a.rec", tmp_path / "a.idx"
    data.write_bytes(b"old rec")
    index.write_bytes(b"old idx")
    with pytest.raises(RuntimeError, match="second"), atomic_paths(data, index) as (d, i):
        d.write_bytes(b"new rec")  # the first file is complete...
        raise RuntimeError("second")  # ...when writing its companion fails
    assert (data.read_bytes(), index.read_bytes()) == (b"old rec", b"old idx")
    assert sorted(os.listdir(tmp_path)) == ["a.idx", "a.rec"]
    with atomic_paths(data, index) as (d, i):
        d.write_bytes(b"new rec")
        i.write_bytes(b"new idx")
    assert (data.read_bytes(), index.read_bytes()) == (b"new rec", b"new idx")
    assert sorted(os.listdir(tmp_path)) == ["a.idx", "a.rec"]
    with pytest.raises(ValueError, match="distinct"), atomic_paths(data, data):
        pass
