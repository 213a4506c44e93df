"""Image folders: labels, clear errors, undecodable images skipped only when asked, and counted."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from marginface.data import ImageFolderDataset, Preprocessing, TrainTransform


def test_labels_follow_sorted_identities(image_folder):
    dataset = ImageFolderDataset(image_folder)
    assert dataset.classes == ["alice", "bob", "carol"]
    assert dataset.labels == [0, 0, 0, 1, 2, 2]
    image, label = dataset[3]
    assert label == 1 and image.mode == "RGB" and image.size == (24, 20)


def test_errors(tmp_path, image_folder):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ImageFolderDataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty dataset"):
        ImageFolderDataset(tmp_path / "empty")
    (image_folder / "dave").mkdir()
    (image_folder / "dave" / "notes.txt").write_text("no image")
    with pytest.raises(ValueError, match="identity 'dave'.*has no images"):
        ImageFolderDataset(image_folder)


def test_undecodable_error_or_counted_skip(image_folder):
    bad = image_folder / "bob" / "zz_broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    dataset = ImageFolderDataset(image_folder)
    index = [str(p) for p, _ in dataset.samples].index(str(bad))
    with pytest.raises(ValueError, match="zz_broken.jpg"):
        dataset[index]
    skipping = ImageFolderDataset(image_folder, skip_undecodable=True)
    assert len(skipping) == 6
    assert [p.name for p, _ in skipping.skipped] == ["zz_broken.jpg"]


def test_train_transform_scaling_and_flip(image_folder):
    dataset = ImageFolderDataset(image_folder)
    image, _ = dataset[0]
    pixels = np.asarray(image, dtype=np.float32)
    rgb = TrainTransform(Preprocessing(mean=(127.5,) * 3, std=(128.0,) * 3), (20, 24), 0.0)
    expected = torch.from_numpy(((pixels - 127.5) / 128.0).transpose(2, 0, 1))
    torch.testing.assert_close(rgb(image), expected)
    flipped = TrainTransform({"mean": 127.5, "std": 128.0}, (20, 24), flip_p=1.0)
    torch.testing.assert_close(flipped(image), expected.flip(2))
    bgr = TrainTransform(Preprocessing(channel_order="BGR"), (20, 24), 0.0)
    torch.testing.assert_close(bgr(image), rgb(image).flip(0))
    with pytest.raises(ValueError, match="align the data first"):
        TrainTransform(Preprocessing(), (112, 112))(image)
    with pytest.raises(ValueError, match="channel_order"):
        Preprocessing(channel_order="RGBA")


def test_transform_from_a_models_config(tmp_path):
    import marginface.models as models

    model = models.create_model("iresnet18", input_size=(112, 112))
    transform = TrainTransform(model.config.preprocessing, model.config.input_size, flip_p=0.0)
    assert transform.preprocessing.template == "arcface_112x112"
    image = Image.new("RGB", (112, 112), (255, 0, 127))
    x = transform(image)
    # insightface scaling (x / 255 - 0.5) / 0.5 for iresnet
    torch.testing.assert_close(
        x[:, 0, 0], torch.tensor([1.0, -1.0, -0.00392157]), atol=1e-5, rtol=0
    )
