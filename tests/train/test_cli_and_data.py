"""CLI errors, and real-data bad input (image folders) caught before the first step."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from train_helpers import TinyCosFace, TinyNet

from marginface.cli.main import main
from marginface.train.config import load_config
from marginface.train.engine import Trainer


def test_cli_reports_config_errors(capsys, tmp_path):
    assert main(["train", "--set", "train.max_steps=1", "--set", "train.bogus=1",
                 "--out", str(tmp_path / "r")]) == 2
    assert "unknown config key 'train.bogus'" in capsys.readouterr().err
    (tmp_path / "cfg.yaml").write_text("optimizer:\n  lr: fast\ntrain:\n  max_steps: 1\n")
    assert main(["train", "--config", str(tmp_path / "cfg.yaml")]) == 2
    assert "optimizer.lr: expected a number, got 'fast'" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "none")]) == 2
    assert "has no checkpoints/" in capsys.readouterr().err
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    assert main(["train", "--resume", str(tmp_path / "run"), "--set", "seed=1"]) == 2
    assert "drop --config and --set" in capsys.readouterr().err


def _folder(root, identities=3, per_identity=4, size=(32, 32)):
    rng = np.random.default_rng(0)
    for i in range(identities):
        (root / f"person{i}").mkdir(parents=True)
        for j in range(per_identity):
            pixels = rng.integers(0, 255, (size[0] + 8, size[1] + 4, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"person{i}" / f"{j}.png")
    return root


def _trainer(tmp_path, data_dir, *extra, classes=3):
    config = load_config(None, ["model.input_size=[32, 32]", "data.kind=folder",
                                f"data.path={data_dir}", "train.batch_size=4",
                                "train.max_steps=2", "train.progress=false", "eval.sets=[]",
                                "train.checkpoint_interval=0", *extra])
    return Trainer(config, tmp_path / "run", model=TinyNet(), head=TinyCosFace(16, classes))


def test_unreadable_image_is_an_error_or_a_counted_skip(tmp_path):
    data = _folder(tmp_path / "faces")
    (data / "person1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ValueError, match=r"1 unreadable image\(s\), first .*broken.png"):
        _trainer(tmp_path, data)
    assert not (tmp_path / "run").exists()
    trainer = _trainer(tmp_path, data, "data.skip_unreadable=true")
    summary = trainer.fit()
    assert summary.skipped_images == 1
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["skipped_images"] == 1
    first = trainer.train_dataset[0][0]
    assert first.dtype == torch.uint8 and first.shape == (3, 32, 32)  # centre crop + resize


def test_identity_selection_and_missing_images(tmp_path):
    data = _folder(tmp_path / "faces")
    trainer = _trainer(tmp_path, data, "data.exclude_identities=[person2]", classes=2)
    assert trainer.num_classes == 2 and len(trainer.train_dataset) == 8
    with pytest.raises(ValueError, match=r"data.identities: \['nobody'\]"):
        _trainer(tmp_path, data, "data.identities=[nobody, person0]", classes=2)
    (data / "person3").mkdir()
    with pytest.raises(ValueError, match="person3"):
        _trainer(tmp_path, data, classes=4)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty dataset"):
        _trainer(tmp_path, empty)


def test_folder_pairs_are_balanced_and_within_identities(tmp_path):
    from marginface.train.real_data import folder_pairs

    data = _folder(tmp_path / "faces", identities=4)
    pairs = folder_pairs(data, ["person1", "person3"], 40, seed=1)
    assert len(pairs) == 40 and pairs.issame.sum() == 20
    names = [pairs.images[i].name.split("/")[0] for i in pairs.pairs.ravel()]
    assert set(names) == {"person1", "person3"}
    for (a, b), same in zip(pairs.pairs, pairs.issame, strict=True):
        assert (pairs.images[a].name.split("/")[0] == pairs.images[b].name.split("/")[0]) == same
        assert a != b
