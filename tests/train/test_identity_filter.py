"""data.min_images_per_identity on folder, rec and lfw data: kept, dropped, counted, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from train_helpers import TinyCosFace, TinyNet

from marginface.train.config import load_config
from marginface.train.engine import Trainer
from marginface.train.identity_filter import min_images_filter

COUNTS = {"ann": 1, "bob": 2, "cyd": 3, "dan": 5}  # images per identity folder


@pytest.fixture
def faces(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "faces"
    for name, count in COUNTS.items():
        (root / name).mkdir(parents=True)
        for j in range(count):
            pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{j}.png")
    return root


def _config(kind, path, *extra):
    return load_config(None, ["model.input_size=[32, 32]", f"data.kind={kind}",
                              f"data.path={path}", "train.batch_size=4", "train.max_steps=2",
                              "train.progress=false", "eval.sets=[]",
                              "train.checkpoint_interval=0", *extra])


@pytest.mark.parametrize("kind", ["folder", "rec"])
def test_min_images_keeps_counts_and_reports(tmp_path, faces, kind, capsys):
    path = faces
    if kind == "rec":
        from marginface.data import pack_folder

        path = tmp_path / "faces.rec"
        pack_folder(faces, path)
    config = _config(kind, path, "data.min_images_per_identity=3")
    trainer = Trainer(config, tmp_path / "run", model=TinyNet(), head=TinyCosFace(16, 2))
    assert "kept 2 identities (8 images), dropped 2 identities (3 images)" in \
        capsys.readouterr().out
    data = trainer.train_dataset
    assert len(data) == 8 and data.num_classes == 2
    assert sorted(data.labels) == [0, 0, 0, 1, 1, 1, 1, 1]
    assert [data[i][1] for i in range(len(data))] == list(data.labels)
    if kind == "folder":
        assert data.classes == ["cyd", "dan"]
    summary = trainer.fit()
    assert (summary.dropped_identities, summary.dropped_images) == (2, 3)
    record = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (record["dropped_identities"], record["dropped_images"]) == (2, 3)


def test_min_images_larger_than_every_identity_names_value_and_largest(tmp_path, faces):
    with pytest.raises(ValueError, match=r"min_images_per_identity=6 is larger than every "
                                         r"identity: the largest has 5 image"):
        Trainer(_config("folder", faces, "data.min_images_per_identity=6"), tmp_path / "run",
                model=TinyNet(), head=TinyCosFace(16, 1))
    assert not (tmp_path / "run").exists()


def test_min_images_one_keeps_everything_and_counts_zero(faces):
    from marginface.data import ImageFolderDataset

    dataset = ImageFolderDataset(faces)
    assert min_images_filter(dataset, 1) is dataset
    assert dataset.dropped.identities == 0 and dataset.dropped.kept_images == sum(COUNTS.values())


def test_min_images_is_refused_for_synthetic_data():
    with pytest.raises(ValueError, match="applies to data.kind folder, rec and lfw"):
        load_config(None, ["train.max_steps=1", "data.min_images_per_identity=2"])


@pytest.mark.shared
def test_lfw_folds_1_to_9_with_two_images(shared_dir):
    """Against people.txt read here directly: people of folds 1-9 with >= 2 images."""
    from marginface.train.config import DataConfig
    from marginface.train.real_data import build_real_dataset

    lines = (shared_dir / "data" / "lfw" / "people.txt").read_text().split()
    folds, i = [], 1
    while i < len(lines):
        n = int(lines[i])
        folds.append([(lines[i + 1 + 2 * k], int(lines[i + 2 + 2 * k])) for k in range(n)])
        i += 1 + 2 * n
    people = {name: count for fold in folds[:9] for name, count in fold}
    kept = {k: v for k, v in people.items() if v >= 2}
    config = DataConfig(kind="lfw", path=str(shared_dir / "data" / "lfw"), exclude_fold=10,
                        min_images_per_identity=2)
    data = build_real_dataset(config, (112, 96))
    assert data.num_classes == len(kept) and len(data) == sum(kept.values())
    assert data.dropped.identities == len(people) - len(kept)
    assert data.dropped.images == sum(people.values()) - sum(kept.values())
    image, label = data[len(data) - 1]
    assert image.dtype == torch.uint8 and image.shape == (3, 112, 96)
    assert label == len(kept) - 1
