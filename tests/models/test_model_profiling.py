"""Parameter and multiply-add counts against the published figures (within 2%)."""

from __future__ import annotations

import pytest
import torch

from marginface.models import count_madds, create_model, profile

# (name, options, params, MAdds) at 112x112; sources: MobileFaceNet paper, insightface model zoo
# (mbf), ArcFace / insightface (IResNet).
PUBLISHED = [
    ("mobilefacenet", {}, 0.99e6, 221e6),
    ("mobilefacenet_wide", {}, 2.06e6, 0.44e9),
    ("iresnet18", {}, 24.0e6, 2.61e9),
    ("iresnet50", {}, 43.6e6, 6.31e9),
    ("iresnet100", {}, 65.2e6, 12.09e9),
]


@pytest.mark.parametrize(("name", "options", "params", "madds"), PUBLISHED)
def test_counts_match_published_figures(name, options, params, madds):
    # Shapes are all the counter needs: build on the meta device (no memory, no arithmetic).
    with torch.device("meta"):
        model = create_model(name, input_size=(112, 112), **options)
    got_params, got_madds = profile(model, (112, 112))
    assert abs(got_params - params) / params < 0.02
    assert abs(got_madds - madds) / madds < 0.02


def test_mobilefacenet_112x96_matches_the_casia_checkpoint_size():
    model = create_model("mobilefacenet", input_size=(112, 96))
    params, madds = profile(model)
    assert params == 999_552  # the 068.ckpt README's learnable value count
    # 112x96 is 6/7 of the 112x112 area; every conv scales with it.
    assert 0.84 < madds / count_madds(create_model("mobilefacenet"), (112, 112)) < 0.875


def test_mobilefacenet_width_scales_the_cost():
    base = profile(create_model("mobilefacenet"))
    wide = profile(create_model("mobilefacenet", width=2.0))
    assert wide[0] > 2.5 * base[0] and wide[1] > 2.5 * base[1]


def test_embedding_dim_changes_only_the_last_layer():
    p128, m128 = profile(create_model("mobilefacenet"))
    p256, m256 = profile(create_model("mobilefacenet", embedding_dim=256))
    assert p256 - p128 == 512 * 128 + 2 * 128  # 1x1 conv weights + BN affine
    assert m256 - m128 == 512 * 128


def test_profile_needs_an_input_size_without_config():
    model = create_model("mobilefacenet")
    del model.config
    with pytest.raises(ValueError, match="input_size"):
        profile(model)
