"""save_model / load_model: one safetensors file holds weights and config."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from marginface.models import create_model, load_model, read_config, save_model
from marginface.models.io import METADATA_KEY

SMALL = (32, 32)


def _trained(name, **kwargs):
    model = create_model(name, **kwargs)
    model.train()
    model(torch.randn(2, 3, *model.config.input_size))
    return model.eval()


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("mobilefacenet", {"input_size": (112, 96), "embedding_dim": 96, "width": 0.5}),
        ("sphere20", {"input_size": SMALL, "batch_norm": True, "dropout": 0.2}),
        ("iresnet18", {"input_size": (48, 32)}),
    ],
)
def test_save_load_round_trip_keeps_weights_and_config(tmp_path, name, kwargs):
    model = _trained(name, **kwargs)
    path = tmp_path / "model.safetensors"
    saved = save_model(model, path)
    assert saved == model.config
    loaded = load_model(path)
    assert loaded.config == model.config
    assert not loaded.training
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x = torch.randn(2, 3, *model.config.input_size)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_config_lives_in_the_safetensors_metadata(tmp_path):
    model = create_model("mobilefacenet", input_size=(112, 96))
    path = tmp_path / "m.safetensors"
    save_model(model, path)
    assert list(tmp_path.iterdir()) == [path]  # one file is enough
    with safe_open(str(path), framework="pt") as handle:
        data = json.loads(handle.metadata()[METADATA_KEY])
    assert data["name"] == "mobilefacenet"
    assert data["input_size"] == [112, 96]
    assert data["embedding_dim"] == 128
    assert data["preprocessing"] == {
        "mean": [127.5] * 3, "std": [128.0] * 3, "channel_order": "RGB",
        "alignment_template": "sphereface_112x96",
    }


def test_overrides_change_the_stored_preprocessing_only(tmp_path):
    model = create_model("iresnet18", input_size=SMALL)
    path = tmp_path / "m.safetensors"
    save_model(model, path, std=(128.0, 128.0, 128.0), channel_order="BGR",
               alignment_template="arcface_112x112")
    config = read_config(path)
    assert config.preprocessing.std == (128.0,) * 3
    assert config.preprocessing.channel_order == "BGR"
    assert config.preprocessing.mean == model.config.preprocessing.mean
    assert model.config.preprocessing.channel_order == "RGB"  # the model itself is unchanged
    assert load_model(path).config.preprocessing.channel_order == "BGR"


def test_bad_overrides_are_rejected(tmp_path):
    model = create_model("mobilefacenet", input_size=SMALL)
    with pytest.raises(ValueError, match="unknown save_model override"):
        save_model(model, tmp_path / "m.safetensors", scale=3)
    with pytest.raises(ValueError, match="std must be positive"):
        save_model(model, tmp_path / "m.safetensors", std=(0.0, 1.0, 1.0))


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_model(tmp_path / "missing.safetensors")
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(ValueError, match="plain.safetensors has no 'marginface.model_config'"):
        load_model(plain)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="junk.safetensors is not a safetensors file"):
        load_model(junk)


def test_weights_not_matching_the_config_are_an_error(tmp_path):
    model = create_model("mobilefacenet", input_size=SMALL)
    path = tmp_path / "m.safetensors"
    save_model(model, path)
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    del tensors["conv1.conv.weight"]
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(ValueError, match="missing.*conv1.conv.weight"):
        load_model(path)


def test_model_without_config_cannot_be_saved(tmp_path):
    model = create_model("mobilefacenet", input_size=SMALL)
    del model.config
    with pytest.raises(ValueError, match="config"):
        save_model(model, tmp_path / "m.safetensors")


def test_model_fingerprint_follows_the_tensors(tmp_path):
    from marginface.models import model_fingerprint

    model = _trained("sphere20", input_size=SMALL)
    first = model_fingerprint(model)
    assert len(first) == 64 and first == model_fingerprint(model.state_dict())
    save_model(model, tmp_path / "m.safetensors")
    assert model_fingerprint(load_model(tmp_path / "m.safetensors")) == first
    state = {k: v.clone() for k, v in model.state_dict().items()}
    name = next(k for k, v in state.items() if v.is_floating_point())
    flat = state[name].view(-1)
    flat[0] = torch.nextafter(flat[0], flat[0] + 1)  # one ulp
    assert model_fingerprint(state) != first
    state = dict(model.state_dict())
    state["renamed"] = state.pop(name)
    assert model_fingerprint(state) != first
    state = dict(model.state_dict())
    state[name] = state[name].double()
    assert model_fingerprint(state) != first
    state = dict(model.state_dict())
    state[name] = state[name].reshape(-1)
    assert model_fingerprint(state) != first  # same bytes, other shape
    # a hand-computed digest of a one-tensor state dict
    import hashlib

    t = torch.tensor([1.0, 2.0])
    expected = hashlib.sha256(b"w\0float32\0(2,)\0" + np.array([1, 2], "<f4").tobytes())
    assert model_fingerprint({"w": t}) == expected.hexdigest()
