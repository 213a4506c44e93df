"""A training batch and an evaluation batch of the same image are bit-identical before
augmentation: both normalise with marginface.preprocessing.normalize."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import default_collate

import marginface.models as models
from marginface.eval.embed import FaceImages, model_preprocessing
from marginface.preprocessing import preprocessing_of
from marginface.train.batches import training_inputs
from marginface.train.config import DataConfig
from marginface.train.real_data import build_real_dataset


@pytest.mark.parametrize(
    ("name", "size", "order"),
    [("mobilefacenet", (112, 96), "RGB"), ("iresnet18", (112, 112), "RGB"),
     ("iresnet18", (112, 112), "BGR")],
)
def test_training_and_evaluation_see_the_same_tensor(tmp_path, name, size, order):
    model = models.create_model(name, input_size=size)
    if order == "BGR":
        bgr = dataclasses.replace(model.config.preprocessing, channel_order="BGR")
        model.config = dataclasses.replace(model.config, preprocessing=bgr)
    rng = np.random.default_rng(0)
    paths = []
    for person in ("a", "b"):
        pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        pixels[0, :, 0] = np.resize(np.arange(256, dtype=np.uint8), size[1])  # every value
        path = tmp_path / person / "0.png"
        path.parent.mkdir()
        Image.fromarray(pixels).save(path)
        paths.append(path)

    dataset = build_real_dataset(DataConfig(kind="folder", path=str(tmp_path)), size)
    images, _ = default_collate([dataset[i] for i in range(len(dataset))])
    assert images.dtype == torch.uint8
    trained = training_inputs(images, None, preprocessing_of(model), "cpu")

    preprocessing, template, _ = model_preprocessing(model)
    faces = FaceImages(paths, preprocessing, template)
    evaluated = torch.stack([faces[i][0] for i in range(len(faces))])
    assert [faces[i][2] for i in range(len(faces))] == [1, 1]  # taken as aligned crops
    assert trained.dtype == evaluated.dtype == torch.float32
    assert torch.equal(trained, evaluated)

    flips = torch.tensor([True, False])
    flipped = training_inputs(images, flips, preprocessing_of(model), "cpu")
    assert torch.equal(flipped[0], evaluated[0].flip(2)) and torch.equal(flipped[1], evaluated[1])
