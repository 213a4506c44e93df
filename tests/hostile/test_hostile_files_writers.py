"""Every writer fails halfway and leaves the old file(s) byte for byte, and no temporary file.

Two kinds of fault: an exception injected into the writer's own work (the N-th image, the N-th
record), and a "full disk" (``RLIMIT_FSIZE``: a write past the limit fails with EFBIG)."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest
import torch
from hostile_files import fail_on_call, file_size_limit, make_faces, snapshot
from PIL import Image

import marginface.data.recpack as recpack
from marginface.data import RecordDataset, pack_folder
from marginface.data.decoding import BadImageError

KEEPS_OLD = "the old file stays byte for byte; no temporary or partial file is left"


def _old_pair(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    out = tmp_path / "out"
    pack_folder(make_faces(tmp_path / "old", {"a": 2, "b": 1}, seed=1), out / "train.rec")
    return out, snapshot(out)


def _pack_with_fault(tmp_path: Path, monkeypatch, name: str, n: int, error: Exception) -> Path:
    """Pack a new folder over an old set with ``recpack.<name>`` raising on its ``n``-th call;
    checks the old set is left byte for byte."""
    out, before = _old_pair(tmp_path)
    new = make_faces(tmp_path / "new", {"x": 3, "y": 3}, seed=2)
    monkeypatch.setattr(recpack, name, fail_on_call(getattr(recpack, name), n, error))
    with pytest.raises(type(error), match=str(error)):
        pack_folder(new, out / "train.rec")
    assert snapshot(out) == before
    return out


@pytest.mark.fault(kind=".rec/.idx writer (pack)", fault="the 3rd image fails to decode mid-pack",
                   behaviour="old .rec, .idx and property stay as a set; the old pair still "
                             "loads; no temporary file")
def test_pack_failing_mid_way_keeps_old_pair(tmp_path, monkeypatch):
    out = _pack_with_fault(tmp_path, monkeypatch, "decode_image", 3, OSError("broken image"))
    assert RecordDataset(out / "train.rec").labels.tolist() == [0, 0, 1]


@pytest.mark.fault(kind=".rec/.idx writer (pack)", fault="an undecodable image in the folder",
                   behaviour="BadImageError naming the image (cannot read image); the old "
                             ".rec/.idx pair stays intact")
def test_pack_bad_image_keeps_old_pair(tmp_path):
    out, before = _old_pair(tmp_path)
    new = make_faces(tmp_path / "new", {"x": 3}, seed=2)
    (new / "x" / "001.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(BadImageError, match="001.jpg: cannot read image"):
        pack_folder(new, out / "train.rec")
    assert snapshot(out) == before


@pytest.mark.fault(kind=".rec/.idx writer (pack)", fault="the record writer raises on record 4",
                   behaviour="old .rec/.idx/property intact; no temporary file")
def test_pack_record_writer_fault_keeps_old_pair(tmp_path, monkeypatch):
    _pack_with_fault(tmp_path, monkeypatch, "write_record", 4, RuntimeError("record 4"))


@pytest.mark.fault(kind=".rec/.idx writer (pack)", fault="disk full while the .rec is written",
                   behaviour="OSError EFBIG; old pair intact; no temporary file")
def test_pack_disk_full_keeps_old_pair(tmp_path):
    out, before = _old_pair(tmp_path)
    new = make_faces(tmp_path / "new", {"x": 20, "y": 20}, seed=2)
    with file_size_limit(8192), pytest.raises(OSError) as caught:
        pack_folder(new, out / "train.rec")
    assert caught.value.errno == errno.EFBIG
    assert snapshot(out) == before


@pytest.mark.fault(kind="align output (per image)", fault="disk full while an image is written",
                   behaviour="the old aligned image stays whole; no partial image, no temp file")
def test_align_disk_full_keeps_old_image(tmp_path):
    from marginface.data.align_batch import align_folder

    source = tmp_path / "src" / "a"
    source.mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)).save(source / "1.png")
    destination = tmp_path / "aligned"
    (destination / "a").mkdir(parents=True)
    (destination / "a" / "1.png").write_bytes(b"old aligned image")
    before = snapshot(destination)
    with file_size_limit(2048), pytest.raises(OSError) as caught:
        align_folder(tmp_path / "src", destination, image_format="PNG", num_workers=0,
                     progress=False)
    assert caught.value.errno == errno.EFBIG
    assert snapshot(destination) == before


@pytest.mark.fault(kind="embed output (.npy + list)", fault="disk full after the .npy was written, "
                   "while its list is written", behaviour="old .npy and old list stay as a pair "
                   "(never a new .npy beside a stale list); no temporary file")
def test_embed_list_failure_keeps_old_pair(tmp_path):
    from marginface.eval.images import _write_embeddings

    out = tmp_path / "emb.npy"
    _write_embeddings(out, np.ones((2, 4), np.float32), ["a.jpg", "b.jpg"])
    before = snapshot(tmp_path)
    long_names = ["x" * 6000 + ".jpg", "y" * 6000 + ".jpg"]  # the list outgrows the limit
    with file_size_limit(4096), pytest.raises(OSError) as caught:
        _write_embeddings(out, np.zeros((2, 4), np.float32), long_names)
    assert caught.value.errno == errno.EFBIG
    assert snapshot(tmp_path) == before


def _tiny_model():
    from marginface.models import create_model

    return create_model("mobilefacenet", input_size=(112, 112), embedding_dim=8)


def _write_model(path: Path) -> None:
    from marginface.models import save_model

    save_model(_tiny_model(), path)


def _write_onnx(path: Path) -> None:
    pytest.importorskip("onnx")
    from marginface.models.export import export_onnx

    export_onnx(_tiny_model(), path)


def _write_bin(path: Path) -> None:
    from marginface.data.binset import write_bin

    write_bin(path, [b"\xff" * 3000, b"\xfe" * 3000], [True])


def _write_pairs(path: Path) -> None:
    from marginface.data.pairs import write_pairs_list

    write_pairs_list(path, [(f"a/{i:04d}.jpg", f"b/{i:04d}.jpg", i % 2 == 0) for i in range(400)])


def _write_checkpoint(path: Path) -> None:
    from marginface.train.checkpoint import save_checkpoint

    save_checkpoint({"step": 1, "weights": torch.zeros(4000)}, path)


def _write_caffemodel(path: Path) -> None:
    from marginface.caffe.caffemodel import LayerBlobs, write_caffemodel

    write_caffemodel(path, [LayerBlobs("fc", "InnerProduct", [np.zeros((40, 100), np.float32)])])


def _write_summary(path: Path) -> None:
    from marginface.train.logging import write_summary

    write_summary(path.parent, {f"metric_{i}": float(i) for i in range(500)})


def _write_roc(path: Path) -> None:
    from marginface.eval.plots import plot_roc

    rng = np.random.default_rng(0)
    plot_roc(rng.normal(size=200), np.arange(200) % 2 == 0, path, title="roc")


def _write_identification(path: Path) -> None:
    from marginface.identify.probes import Identification, write_identification

    failed = {f"probe_{i}.jpg": "no face" for i in range(100)}
    write_identification(Identification([], 0.3, failed), path)


def _write_config(path: Path) -> None:
    from marginface.train.config import config_from_dict, save_config

    save_config(config_from_dict({"train": {"max_steps": 10}}), path)


def _write_landmarks(path: Path) -> None:
    from marginface.data.lfw import write_landmarks

    write_landmarks(path, {f"a/{i:04d}.jpg": np.zeros((5, 2)) for i in range(50)})


WRITERS = {
    "identify report (.csv)": ("answers.csv", _write_identification),
    "identify report (.json)": ("answers.json", _write_identification),
    "run config (config.yaml)": ("config.yaml", _write_config),
    "landmarks file": ("landmarks.txt", _write_landmarks),
    "model file (.safetensors)": ("model.safetensors", _write_model),
    "ONNX export": ("model.onnx", _write_onnx),
    "verification set (.bin)": ("pairs.bin", _write_bin),
    "pairs list": ("pairs.txt", _write_pairs),
    "checkpoint": ("step_1.ckpt", _write_checkpoint),
    "caffemodel": ("net.caffemodel", _write_caffemodel),
    "run report (summary.json)": ("summary.json", _write_summary),
    "report plot (roc.png)": ("roc.png", _write_roc),
}


@pytest.mark.fault(kind="every other writer (model, ONNX, .bin, pairs list, checkpoint, "
                   "caffemodel, summary.json, plots, identify reports, config.yaml, landmarks)",
                   fault="disk full halfway through the write",
                   behaviour=KEEPS_OLD)
@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_writer_disk_full_keeps_old_file(tmp_path, kind):
    name, write = WRITERS[kind]
    target = tmp_path / name
    target.write_bytes(b"old contents")
    with file_size_limit(1024), pytest.raises(OSError) as caught:
        write(target)
    assert caught.value.errno == errno.EFBIG
    assert snapshot(tmp_path) == {name: b"old contents"}
    write(target)  # and without the fault the same writer replaces it
    assert target.read_bytes() != b"old contents"


@pytest.mark.fault(kind=".rec/.idx writer (pack)", fault="crash between renaming the .rec and "
                   "the .idx (the commit itself fails)", behaviour="the .idx is missing, so the "
                   "set is refused (FileNotFoundError naming it): never a new .rec beside a "
                   "stale .idx")
def test_pack_commit_interrupted_never_pairs_new_rec_with_old_idx(tmp_path, monkeypatch):
    import marginface.atomic as atomic

    out, before = _old_pair(tmp_path)
    new = make_faces(tmp_path / "new", {"x": 3, "y": 3}, seed=2)
    # os.replace: 1st call the .rec, 2nd the property, 3rd the .idx (renamed last)
    monkeypatch.setattr(atomic.os, "replace",
                        fail_on_call(atomic.os.replace, 3, OSError("power cut")))
    with pytest.raises(OSError, match="power cut"):
        pack_folder(new, out / "train.rec")
    monkeypatch.undo()
    assert not (out / "train.idx").exists()
    assert (out / "train.rec").read_bytes() != before["train.rec"]
    assert sorted(snapshot(out)) == ["property", "train.rec"]  # no temporary file either
    with pytest.raises(FileNotFoundError, match="train.idx"):
        RecordDataset(out / "train.rec")
