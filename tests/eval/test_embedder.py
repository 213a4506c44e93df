"""The one embedding loop: flip modes, chunking, the Embedder and its old import path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import marginface.models as models
from marginface.eval import Embedder, embed_batch, embed_tensor, make_forward
from marginface.preprocessing import Preprocessing, normalize


def _model(input_size=(48, 32)):
    model = models.create_model("mobilefacenet", input_size=input_size)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, *input_size) * 2)
    return model.eval()


def test_embedder_chunks_flips_and_preprocesses():
    model = _model()
    x = torch.randn(7, 3, 48, 32)
    whole = Embedder(model, batch_size=64)(x)
    chunked = Embedder(model, batch_size=3)(x)
    assert torch.allclose(whole, chunked, atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        flipped = model(x) + model(x.flip(3))
    got = Embedder(model)(x, flip=True)
    assert (got - flipped).abs().max() <= 1e-4 * flipped.abs().max()
    pixels = torch.randint(0, 256, (2, 3, 48, 32)).float()
    with torch.no_grad():
        expected = model((pixels - 127.5) / 128)
    assert torch.allclose(Embedder(model).embed_pixels(pixels), expected, atol=1e-4, rtol=1e-3)
    with pytest.raises(ValueError, match="model expects"):
        Embedder(model)(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="batch_size"):
        Embedder(model, batch_size=0)


def test_flip_modes_of_one_batch():
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    x = torch.randn(3, 3, 4, 4)
    with torch.no_grad():
        plain, mirrored = linear(x), linear(x.flip(3))
        assert torch.allclose(embed_batch(linear, x), plain)
        assert torch.allclose(embed_batch(linear, x, "sum"), plain + mirrored, atol=1e-6)
        assert torch.allclose(embed_batch(linear, x, "concat"), torch.cat([plain, mirrored], 1))
    with pytest.raises(ValueError, match="flip must be one of"):
        embed_batch(linear, x, "mean")


def test_embed_tensor_normalises_pixels_once_and_chunks():
    model = _model()
    pre = Preprocessing(mean=127.5, std=128.0)
    pixels = torch.randint(0, 256, (5, 3, 48, 32), dtype=torch.uint8)
    forward = make_forward(model, "eager", input_size=(48, 32))
    from_pixels = embed_tensor(forward, pixels, preprocessing=pre, batch_size=2, flip="sum")
    from_floats = embed_tensor(forward, normalize(pixels, pre), batch_size=5, flip="sum")
    assert torch.allclose(from_pixels, from_floats, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="preprocessing"):
        embed_tensor(forward, pixels)
    assert embed_tensor(forward, pixels[:0], preprocessing=pre).shape == (0, 0)


def test_models_embedder_is_the_eval_one_with_a_warning():
    with pytest.warns(DeprecationWarning, match="marginface.eval.embedder"):
        old = models.Embedder
    assert old is Embedder
    with pytest.warns(DeprecationWarning, match="marginface.models.prepare"):
        from marginface.models.inference import prepare_for_inference
    assert prepare_for_inference is models.prepare_for_inference
