"""``data.exclude_list``: sample keys, the list's format and errors, the dropped images counted."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from train_helpers import TinyCosFace, TinyNet

from marginface.data import ImageFolderDataset
from marginface.train.config import load_config
from marginface.train.engine import Trainer
from marginface.train.exclusion import ExcludedSamples, read_exclude_list, sample_keys
from marginface.train.real_data import IdentitySubset


def _folder(root, identities=3, per_identity=4):
    rng = np.random.default_rng(0)
    for i in range(identities):
        (root / f"person{i}").mkdir(parents=True)
        for j in range(per_identity):
            pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"person{i}" / f"{j}.png")
    return root


def test_keys_are_paths_under_the_root_and_survive_identity_selection(tmp_path):
    data = ImageFolderDataset(_folder(tmp_path / "d"))
    keys = sample_keys(data)
    assert keys[:2] == ["person0/0.png", "person0/1.png"] and len(keys) == 12
    subset = IdentitySubset(data, ["person2"])
    assert sample_keys(subset) == [f"person2/{j}.png" for j in range(4)]
    assert sample_keys(list(range(3))) == ["0", "1", "2"]  # no paths: the index


def test_excluded_samples_drop_listed_keys_and_name_unknown_ones(tmp_path):
    data = ImageFolderDataset(_folder(tmp_path / "d"))
    listing = tmp_path / "out.txt"
    listing.write_text("# comment\nperson1/2.png\n\n  person0/0.png  \n")
    assert read_exclude_list(listing) == [(2, "person1/2.png"), (4, "person0/0.png")]
    kept = ExcludedSamples(data, listing)
    assert len(kept) == 10 and kept.excluded == 2 and kept.num_classes == 3
    kept_keys = {sample_keys(data)[i] for i in kept.keep}
    assert len(kept_keys) == 10 and not kept_keys & {"person1/2.png", "person0/0.png"}
    assert kept.labels == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    listing.write_text("person1/2.png\nperson9/0.png\n")
    with pytest.raises(ValueError, match=r"out.txt:2: 'person9/0.png' is not a sample"):
        ExcludedSamples(data, listing)
    with pytest.raises(FileNotFoundError, match="data.exclude_list"):
        ExcludedSamples(data, tmp_path / "missing.txt")


def test_the_trainer_counts_the_excluded_images(tmp_path, capsys):
    data = _folder(tmp_path / "d")
    listing = tmp_path / "outliers.txt"
    listing.write_text("person0/1.png\nperson2/3.png\nperson2/0.png\n")
    config = load_config(None, ["model.input_size=[32, 32]", "data.kind=folder",
                                f"data.path={data}", f"data.exclude_list={listing}",
                                "train.batch_size=4", "train.max_steps=2",
                                "train.progress=false", "eval.sets=[]",
                                "train.checkpoint_interval=0"])
    trainer = Trainer(config, tmp_path / "run", model=TinyNet(), head=TinyCosFace(16, 3))
    assert len(trainer.train_dataset) == 9
    assert "data.exclude_list: 3 image(s) left out, 9 remain" in capsys.readouterr().out
    summary = trainer.fit()
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["excluded_images"] == 3
    assert "left out by data.exclude_list: 3" in summary.text
