"""The one Preprocessing type: aliases, old field names and values, normalize's arithmetic."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import marginface.data as data
import marginface.models as models
from marginface.models.io import FORMAT_KEY, METADATA_KEY
from marginface.preprocessing import Preprocessing, normalize


def test_models_and_data_name_the_same_class():
    assert models.Preprocessing is Preprocessing
    assert data.Preprocessing is Preprocessing


def test_both_template_spellings_and_empty_template():
    assert Preprocessing(template="sphereface_112x96").alignment_template == "sphereface_112x96"
    pre = Preprocessing(alignment_template="arcface_112x112")
    assert pre.template == pre.alignment_template == "arcface_112x112"
    assert Preprocessing(alignment_template="").alignment_template is None
    old_data = Preprocessing.from_config({"mean": 127.5, "std": 128.0, "template": ""})
    assert old_data == Preprocessing(mean=(127.5,) * 3, std=(128.0,) * 3, alignment_template=None)
    with pytest.raises(ValueError, match="unknown keys"):
        Preprocessing.from_config({"scale": 0.5})
    with pytest.raises(ValueError, match="std"):
        Preprocessing(std=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="mean"):
        Preprocessing(mean=(1.0, 2.0))


@pytest.mark.parametrize("key", ["alignment_template", "template"])
def test_a_model_file_written_before_the_change_loads(tmp_path, key):
    model = models.create_model("mobilefacenet", input_size=(112, 96))
    config = {
        "name": "mobilefacenet", "input_size": [112, 96], "embedding_dim": 128,
        "options": {"width": 1.0},
        "preprocessing": {"mean": [127.5] * 3, "std": [128.0] * 3, "channel_order": "RGB",
                          key: "sphereface_112x96"},
    }
    path = tmp_path / "old.safetensors"
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), {METADATA_KEY: json.dumps(config), FORMAT_KEY: "1"})
    loaded = models.load_model(path).config.preprocessing
    assert loaded == model.config.preprocessing


def test_a_file_without_preprocessing_keeps_the_old_default(tmp_path):
    config = models.ModelConfig.from_dict(
        {"name": "iresnet18", "input_size": [112, 112], "embedding_dim": 512}
    )
    assert config.preprocessing.std == (127.5,) * 3
    assert config.preprocessing.alignment_template == "arcface_112x112"


@pytest.mark.parametrize("order", ["RGB", "BGR"])
@pytest.mark.parametrize("std", [127.5, 128.0, 58.395])
def test_normalize_is_float32_subtract_then_divide(order, std):
    pixels = np.arange(256, dtype=np.uint8).repeat(3).reshape(16, 16, 3)
    pre = Preprocessing(mean=(123.675, 116.28, 103.53), std=std, channel_order=order)
    x = pixels.astype(np.float32)[:, :, ::-1] if order == "BGR" else pixels.astype(np.float32)
    expected = (x - np.float32(pre.mean)) / np.float32(pre.std)
    got = normalize(torch.from_numpy(pixels).permute(2, 0, 1), pre)
    assert got.dtype == torch.float32
    assert np.array_equal(got.permute(1, 2, 0).numpy(), expected)
    batch = normalize(torch.from_numpy(pixels).permute(2, 0, 1)[None].repeat(2, 1, 1, 1), pre)
    assert torch.equal(batch[1], got)
    with pytest.raises(ValueError, match="pixels must have shape"):
        normalize(torch.zeros(1, 16, 16), pre)
