"""prepare_for_inference: BN folding, channels_last and bf16 against plain eager PyTorch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from face_samples import aligned_lfw_faces
from torch import nn

from marginface.models import create_model, import_state_dict, prepare_for_inference
from marginface.models.prepare import fold_batchnorm

SMALL = (32, 32)


def _with_statistics(name, input_size=SMALL, **options):
    model = create_model(name, input_size=input_size, **options)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, *input_size) * 2)
    # Non-trivial BN affine parameters too, so folding has something to get wrong.
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)) and module.weight.requires_grad:
            with torch.no_grad():
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize("name", ["mobilefacenet", "mobilefacenet_wide", "iresnet18", "sphere20"])
def test_folding_removes_conv_bn_pairs_and_keeps_outputs(name):
    model = _with_statistics(name, **({"batch_norm": True} if name == "sphere20" else {}))
    folded = fold_batchnorm(model)
    count = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    left = sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert left < count
    x = torch.randn(4, 3, *SMALL)
    with torch.no_grad():
        expected, got = model(x), folded(x)
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()
    assert folded.config == model.config
    assert model.training is False and any(
        isinstance(m, nn.BatchNorm2d) for m in model.modules()
    )  # the original is untouched


@pytest.mark.parametrize(
    "switches",
    [{"fold_bn": False, "channels_last": True}, {"fold_bn": True, "channels_last": True},
     {"fold_bn": True, "channels_last": False}],
)
def test_float32_paths_match_eager(switches):
    model = _with_statistics("mobilefacenet", (112, 96))
    fast = prepare_for_inference(model, **switches)
    x = torch.randn(3, 3, 112, 96)
    with torch.no_grad():
        expected, got = model(x), fast(x)
    assert got.dtype == torch.float32
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()
    assert not any(p.requires_grad for p in fast.parameters())


def test_bf16_path_returns_float32_close_to_eager():
    model = _with_statistics("mobilefacenet", (112, 96))
    fast = prepare_for_inference(model, bf16=True)
    x = torch.randn(6, 3, 112, 96)
    with torch.no_grad():
        expected, got = model(x), fast(x)
    assert got.dtype == torch.float32
    assert F.cosine_similarity(got, expected).min() > 0.99


@pytest.mark.shared
def test_fast_paths_agree_with_eager_on_real_lfw_faces(shared_dir):
    checkpoint = torch.load(
        shared_dir / "models" / "mobilefacenet-casia" / "068.ckpt",
        weights_only=False, map_location="cpu",
    )
    model = create_model("mobilefacenet", input_size=(112, 96))
    import_state_dict(model, checkpoint["net_state_dict"])
    model.eval()
    pixels = aligned_lfw_faces(shared_dir, 48)
    images = model.config.preprocessing.apply(pixels)
    with torch.no_grad():
        eager = model(images)
    for bf16 in (False, True):
        with torch.no_grad():
            fast = prepare_for_inference(model, bf16=bf16)(images)
        cosine = F.cosine_similarity(fast, eager)
        assert cosine.min() > (0.99999 if not bf16 else 0.999), (bf16, cosine.min())
    # Real faces of different people are far from identical: the check above is not vacuous.
    normed = F.normalize(eager, dim=1)
    assert (normed @ normed.T).fill_diagonal_(0).max() < 0.99
