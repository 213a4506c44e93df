"""create_model / list_models: names, errors, shapes, train/eval, determinism, state dicts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from marginface.models import ModelConfig, create_model, list_models
from marginface.templates import template_for_size

ALL = [
    "iresnet100", "iresnet18", "iresnet34", "iresnet50", "mobilefacenet", "mobilefacenet_wide",
    "sphere20", "sphere36", "sphere64",
]
NATIVE = {name: (112, 96) if name.startswith("sphere") else (112, 112) for name in ALL}
OTHER = {name: (112, 112) if size == (112, 96) else (112, 96) for name, size in NATIVE.items()}
DIMS = {name: 128 if name == "mobilefacenet" else 512 for name in ALL}


def test_list_models_is_the_sorted_registry():
    assert list_models() == ALL


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown model name 'resnet50'.*iresnet50.*sphere64"):
        create_model("resnet50")


@pytest.mark.parametrize("size", [(100, 100), (112,), (112, 0), "112x112", (112.5, 112)])
def test_bad_input_size_is_rejected(size):
    with pytest.raises(ValueError, match="input_size"):
        create_model("mobilefacenet", input_size=size)


@pytest.mark.parametrize("dim", [0, -3, 1.5, True])
def test_bad_embedding_dim_is_rejected(dim):
    with pytest.raises(ValueError, match="embedding_dim"):
        create_model("mobilefacenet", embedding_dim=dim)


def test_unknown_option_is_rejected_with_accepted_ones():
    with pytest.raises(ValueError, match=r"\['depth'\].*accepted: \['width'\]"):
        create_model("mobilefacenet", depth=3)


def test_bad_option_values_are_rejected():
    with pytest.raises(ValueError, match="width"):
        create_model("mobilefacenet", width=0)
    with pytest.raises(ValueError, match="layers"):
        create_model("iresnet50", layers=(3, 4))
    with pytest.raises(ValueError, match="dropout"):
        create_model("sphere36", dropout=1.5)


HEAVY = {"iresnet50", "iresnet100", "sphere64"}
SMALL = (32, 32)  # behaviour tests run at a small input size (any multiple of 16 is valid)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in ALL]
)
def test_forward_backward_shapes_at_both_input_sizes(name):
    model = create_model(name)
    assert isinstance(model.config, ModelConfig)
    assert model.config.input_size == NATIVE[name]
    assert model.config.embedding_dim == DIMS[name]
    x = torch.randn(2, 3, *NATIVE[name], requires_grad=True)
    out = model(x)
    assert out.shape == (2, DIMS[name])
    out.square().sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape and x.grad.abs().sum() > 0
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert all(p.grad is not None for p in trainable)
    del model, out, x

    other = create_model(name, input_size=OTHER[name], embedding_dim=64).eval()
    with torch.no_grad():
        assert other(torch.randn(1, 3, *OTHER[name])).shape == (1, 64)


@pytest.mark.parametrize("shape", [(1, 3, 112, 112), (1, 1, 112, 96), (3, 112, 96)])
def test_wrong_image_shape_is_a_value_error(shape):
    model = create_model("mobilefacenet", input_size=(112, 96)).eval()
    with pytest.raises(ValueError, match=r"images must have shape \(N, 3, 112, 96\)"):
        model(torch.randn(*shape))


def test_config_defaults_follow_family_and_input_size():
    mfn96 = create_model("mobilefacenet", input_size=(112, 96)).config.preprocessing
    assert mfn96.alignment_template == "sphereface_112x96"
    assert mfn96.mean == (127.5,) * 3 and mfn96.std == (128.0,) * 3
    assert mfn96.channel_order == "RGB"
    r18 = create_model("iresnet18").config
    assert r18.preprocessing.alignment_template == "arcface_112x112"
    assert r18.preprocessing.std == (127.5,) * 3
    assert r18.options == {"layers": [2, 2, 2, 2], "dropout": 0.0}
    sphere = create_model("sphere36", input_size=SMALL).config
    assert sphere.options["batch_norm"] is True
    assert sphere.preprocessing.alignment_template is None
    assert create_model("sphere20").config.preprocessing.alignment_template == "sphereface_112x96"


def test_preprocessing_applies_mean_std_and_channel_order():
    pre = create_model("mobilefacenet_wide", input_size=SMALL).config.preprocessing
    pixels = torch.tensor([0.0, 127.5, 255.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert torch.allclose(pre.apply(pixels)[0, :, 0, 0], torch.tensor([-1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="channel_order"):
        type(pre)(channel_order="RGBA")


@pytest.mark.parametrize("name", ["mobilefacenet", "sphere36", "iresnet18", "mobilefacenet_wide"])
def test_train_and_eval_behaviour(name):
    model = create_model(name, input_size=SMALL)
    x = torch.randn(4, 3, *SMALL)
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    before = bn.running_mean.clone()
    model.train()
    model(x)
    assert not torch.equal(bn.running_mean, before)  # train mode updates BN statistics
    model.eval()
    with torch.no_grad():
        stats = bn.running_mean.clone()
        batch = model(x)
        single = model(x[1:2])
    assert torch.equal(bn.running_mean, stats)  # eval mode does not
    # In eval a sample's embedding does not depend on the rest of the batch.
    scale = batch.abs().max()
    assert (batch[1:2] - single).abs().max() <= 1e-5 * scale


def test_sphere36_dropout_acts_only_in_training():
    model = create_model("sphere36", input_size=SMALL)
    x = torch.randn(2, 3, *SMALL)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    model.train()
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x))


@pytest.mark.parametrize("name", ["mobilefacenet", "iresnet18", "sphere20"])
def test_seeded_construction_and_forward_are_deterministic(name):
    torch.manual_seed(7)
    first = create_model(name, input_size=SMALL).eval()
    torch.manual_seed(7)
    second = create_model(name, input_size=SMALL).eval()
    for (k1, v1), (k2, v2) in zip(first.state_dict().items(), second.state_dict().items(),
                                  strict=True):
        assert k1 == k2 and torch.equal(v1, v2)
    x = torch.randn(2, 3, *SMALL)
    with torch.no_grad():
        assert torch.equal(first(x), second(x))
        assert torch.equal(first(x), first(x))


@pytest.mark.parametrize("name", ["mobilefacenet_wide", "iresnet34", "sphere36"])
def test_state_dict_round_trip(name):
    source = create_model(name, input_size=SMALL)
    source.train()
    source(torch.randn(2, 3, *SMALL))  # non-trivial BN statistics
    source.eval()
    target = create_model(name, input_size=SMALL).eval()
    target.load_state_dict(source.state_dict(), strict=True)
    x = torch.randn(1, 3, *SMALL)
    with torch.no_grad():
        assert torch.equal(source(x), target(x))


def test_each_spec_names_its_default_preprocessing():
    from marginface.models.registry import _REGISTRY, default_preprocessing

    for name, spec in _REGISTRY.items():
        assert spec.preprocessing.alignment_template == template_for_size(spec.input_size)
        assert create_model(name).config.preprocessing == spec.preprocessing
        assert default_preprocessing(name, spec.input_size) == spec.preprocessing
    with pytest.raises(ValueError, match="unknown model name"):
        default_preprocessing("resnet", (112, 112))
