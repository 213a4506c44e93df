"""Hostile file names and folder trees: newlines and non-ASCII names in embed's file list,
symlinked identity folders and symlink loops, the lfw training kind's centre crops counted."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

import marginface.models as models
from marginface.cli.main import main
from marginface.data import ImageFolderDataset
from marginface.data.imagefolder import list_image_tree
from marginface.eval.embed import compute_embeddings
from marginface.eval.images import embed_folder, escape_listing_name

fault = pytest.mark.fault
RUN = ["--no-progress", "--workers", "0"]


def _image(path, size_wh=(96, 112), seed=0):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size_wh[1], size_wh[0], 3), dtype=np.uint8)).save(path)
    return path


@fault(kind="embed file list", fault="file names with a newline, a backslash and non-ASCII",
       behaviour="NAME.json lists them exactly, row i of the .npy is image i; .txt escapes")
def test_embed_json_listing_matches_rows(tmp_path):
    torch.manual_seed(0)
    model = models.create_model("mobilefacenet", input_size=(112, 96), embedding_dim=16).eval()
    folder = tmp_path / "faces"
    names = ["ändern\nzeile.png", "b\\slash.png", "日本/顔.png", "plain.png"]
    for seed, name in enumerate(names):
        _image(folder / name, seed=seed)
    out = tmp_path / "emb.npy"
    npy, listing = embed_folder(model, folder, out, flip=None, num_workers=0, progress=False)
    assert listing == out.with_suffix(".json")
    listed = json.loads(listing.read_text(encoding="utf-8"))
    assert sorted(listed) == sorted(names) and len(listed) == 4
    rows = np.load(npy)
    assert rows.shape[0] == len(listed)
    # each row is its listed image's embedding: embed them again, in the opposite order
    again = compute_embeddings(model, [folder / n for n in reversed(listed)], flip=None,
                               num_workers=0, progress=False).embeddings[::-1]
    again = again / np.linalg.norm(again, axis=1, keepdims=True)
    np.testing.assert_allclose(rows, again, atol=1e-5)
    assert np.abs(rows[0] - rows[1]).max() > 1e-3  # distinct images: the order is testable
    # the deprecated .txt: one line per row, newline and backslash escaped
    lines = out.with_suffix(".txt").read_text(encoding="utf-8").splitlines()
    assert lines == [escape_listing_name(n) for n in listed]
    assert "ändern\\nzeile.png" in lines and "b\\\\slash.png" in lines


@fault(kind="image folder", fault="identity folder that is a symbolic link",
       behaviour="followed by align (and the folder walkers of embed, enroll, pack)")
def test_align_follows_symlinked_identity_folders(tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere" / "alice"
    _image(elsewhere / "0.png", (112, 112), 1)
    root = tmp_path / "in"
    _image(root / "bob" / "0.png", (112, 112), 2)
    os.symlink(elsewhere, root / "alice")
    out = tmp_path / "out"
    assert main(["align", str(root), "--out", str(out), *RUN]) == 0
    assert "2 images" in capsys.readouterr().out
    assert (out / "alice" / "0.jpg").is_file() and (out / "bob" / "0.jpg").is_file()
    assert ImageFolderDataset(root).classes == ["alice", "bob"]  # pack / training walker


@fault(kind="image folder", fault="symbolic link loop (a link to a folder above it)",
       behaviour="not walked again, a warning names it; the walk ends")
def test_symlink_loop_is_guarded(tmp_path):
    root = tmp_path / "in"
    _image(root / "bob" / "0.png", (112, 112))
    os.symlink(root, root / "bob" / "again")  # bob/again -> in: an endless tree
    os.symlink("..", root / "up")  # -> tmp_path, which holds in/ again
    with pytest.warns(UserWarning, match=r"loop back.*(again|up)"):
        paths = list_image_tree(root)
    names = sorted(p.relative_to(root).as_posix() for p in paths)
    assert names == ["bob/0.png"]


@fault(kind="image folder", fault="dangling symbolic link named .jpg",
       behaviour="listed, so reading it fails naming it (never dropped silently)")
def test_dangling_link_is_named(tmp_path):
    root = tmp_path / "in"
    _image(root / "bob" / "0.png", (112, 112))
    os.symlink(tmp_path / "gone.jpg", root / "bob" / "1.jpg")
    paths = list_image_tree(root)
    assert [p.name for p in paths] == ["0.png", "1.jpg"]
    assert main(["align", str(root), "--out", str(tmp_path / "out"), *RUN]) == 2
    # the identity-folder walker (pack, enroll, training) lists it too: counted when skipped
    data = ImageFolderDataset(root, skip_undecodable=True)
    assert [p.name for p, _ in data.skipped] == ["1.jpg"] and len(data) == 1


def _fake_lfw(root, with_landmarks: set[str]):
    from marginface.data.lfw import lfw_image_path, write_landmarks
    from marginface.templates import template_points

    people = [("Ann", 2), ("Bo", 2), ("Cy", 2), ("Di", 2)]
    lines = ["2", "2", "Ann 2", "Bo 2", "2", "Cy 2", "Di 2"]
    (root / "people.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "people.txt").write_text("\n".join(lines) + "\n")
    table = {}
    for seed, (name, count) in enumerate(people):
        for k in range(1, count + 1):
            rel = lfw_image_path(name, k)
            _image(root / "images" / rel, (150, 150), seed * 10 + k)
            if rel in with_landmarks:
                table[rel] = template_points("arcface_112x112") + 19.0
    write_landmarks(root / "lfw_landmark.txt", table)


@fault(kind="training data (lfw kind)", fault="images without landmarks",
       behaviour="centre-cropped, counted at the start of the run and in summary.json")
@pytest.mark.slow  # a (one-step) training run: about 5 s
def test_lfw_training_counts_centre_crops(tmp_path, capsys):
    from marginface.train.config import load_config
    from marginface.train.engine import Trainer

    lfw = tmp_path / "lfw"
    _fake_lfw(lfw, {"Ann/Ann_0001.jpg", "Bo/Bo_0002.jpg"})
    config = load_config(None, ["model.input_size=[112, 112]", "data.kind=lfw",
                                f"data.path={lfw}", "data.exclude_fold=2",
                                "train.batch_size=2", "train.max_steps=1",
                                "train.progress=false", "eval.sets=[]",
                                "train.checkpoint_interval=0"])
    tiny = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5, stride=4), torch.nn.Flatten(),
                               torch.nn.LazyLinear(16))
    tiny(torch.zeros(1, 3, 112, 112))  # materialise the lazy layer
    trainer = Trainer(config, tmp_path / "run", model=tiny)  # the configured head (cosface)
    assert "2 training image(s) have no landmarks and are centre-cropped" in \
        capsys.readouterr().out
    summary = trainer.fit()
    record = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert record["center_cropped_images"] == 2
    assert "centre-cropped (no landmarks): 2" in summary.text


@fault(kind="training eval set (folder kind)", fault="raw photos, not aligned crops",
       behaviour="centre-cropped as the training data is, and counted (center_cropped)")
@pytest.mark.slow  # embeds 8 images with a MobileFaceNet
def test_training_eval_counts_centre_crops(tmp_path):
    from marginface.train.evaluation import evaluate_pair_set
    from marginface.train.real_data import folder_pairs

    for person in range(2):
        for k in range(2):
            _image(tmp_path / "eval" / f"p{person}" / f"{k}.png", (150, 130), person * 2 + k)
    pairs = folder_pairs(tmp_path / "eval", None, 20, seed=0)
    torch.manual_seed(0)
    model = models.create_model("mobilefacenet", input_size=(112, 112), embedding_dim=16)
    result = evaluate_pair_set(model, pairs, flip=False, n_folds=2)
    assert result["center_cropped"] == 4 and result["pairs"] == 20
