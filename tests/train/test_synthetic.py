"""The embedded default dataset: deterministic, disjoint verification identities, learnable."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from marginface.train.synthetic import SyntheticFaces, identity_latent, synthetic_pairs


def test_deterministic_and_seeded():
    a = SyntheticFaces(3, 4, image_size=(48, 40), seed=5, cache=False)
    b = SyntheticFaces(3, 4, image_size=(48, 40), seed=5)
    for i in range(len(a)):
        image, label = a[i]
        assert image.dtype == torch.uint8 and image.shape == (3, 48, 40)
        assert torch.equal(image, b[i][0]) and label == b[i][1] == i // 4
    assert not torch.equal(a[0][0], a[1][0])  # a new pose/lighting/expression draw per image
    other = SyntheticFaces(3, 4, image_size=(48, 40), seed=6)
    assert not torch.equal(a[0][0], other[0][0])
    assert a.num_classes == 3 and list(a.labels) == [0] * 4 + [1] * 4 + [2] * 4


def test_pairs_are_disjoint_identities_and_balanced():
    train0 = identity_latent(0, "train", 0)
    pairs0 = identity_latent(0, "pairs", 0)
    assert train0["face_a"] != pairs0["face_a"]
    images, issame = synthetic_pairs(6, 20, image_size=(32, 32), seed=0)
    assert images.shape == (40, 3, 32, 32) and issame.sum() == 10
    again, _ = synthetic_pairs(6, 20, image_size=(32, 32), seed=0)
    assert torch.equal(images, again)
    with pytest.raises(ValueError, match="num_identities must be >= 2"):
        synthetic_pairs(1, 20)


def test_same_identity_images_are_closer_than_others():
    """Even raw pixels carry identity: same-identity images correlate more (mean over pairs)."""
    faces = SyntheticFaces(12, 6, image_size=(32, 32), seed=3)
    x = torch.stack([faces[i][0] for i in range(len(faces))]).float().flatten(1)
    x = torch.nn.functional.normalize(x - x.mean(0), dim=1)
    sim = x @ x.T
    labels = torch.as_tensor(faces.labels)
    same = (labels[:, None] == labels[None]) & ~torch.eye(len(labels), dtype=torch.bool)
    assert sim[same].mean() > sim[labels[:, None] != labels[None]].mean() + 0.05


def test_short_run_learns_and_writes_every_artefact(tmp_path):
    """MobileFaceNet (width 0.25, 32x32) + CosFace on synthetic faces: held-out verification
    rises well above chance, and the run directory holds every artefact."""
    from marginface.models import load_model
    from marginface.train.launch import run_training

    overrides = [
        "model.name=mobilefacenet", "model.input_size=[32, 32]", "model.embedding_dim=32",
        "model.options={width: 0.25}", "head.name=cosface", "head.scale=16.0",
        "head.margin=0.2", "data.synthetic.num_identities=24",
        "data.synthetic.images_per_identity=10", "data.synthetic.pair_identities=16",
        "data.synthetic.num_pairs=300", "optimizer.lr=0.1", "schedule.warmup_steps=5",
        "train.batch_size=48", "train.max_steps=60", "train.log_interval=5",
        "train.checkpoint_interval=30", "train.progress=false", "train.threads=1",
        "eval.interval=30", "eval.batch_size=100",
    ]
    summary = run_training(None, overrides, out=tmp_path)
    for name in ("config.yaml", "metrics.csv", "verification.csv", "summary.json", "loss.png",
                 "lr.png", "verification.png", "model.safetensors", "checkpoints/best.ckpt",
                 "checkpoints/step_00000060.ckpt"):
        assert (tmp_path / name).is_file(), name
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    saved = json.loads((tmp_path / "summary.json").read_text())
    for key in ("steps", "final_accuracy", "best_accuracy", "images_per_second", "seconds"):
        assert key in saved
    assert saved["steps"] == 60 and saved["images_per_second"] > 0
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["step", "epoch", "loss", "lr"]
    assert summary.final_accuracy == saved["final_accuracy"]
    # chance is 50% on balanced pairs; the margin of 15 points is ~5 standard errors at 300 pairs
    assert saved["best_accuracy"] >= saved["final_accuracy"] > 0.65
    model = load_model(tmp_path / "model.safetensors")
    assert model.config.input_size == (32, 32)
    losses = np.loadtxt(tmp_path / "metrics.csv", delimiter=",", skiprows=1, usecols=2)
    assert losses[-3:].mean() < losses[:3].mean()
