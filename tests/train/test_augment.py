"""Face augmentations: hand-computed effects, off = bit-identical, seeded and exact on resume."""

from __future__ import annotations

import torch
from test_engine import assert_exact_resume, states, tiny_trainer

from marginface.preprocessing import Preprocessing
from marginface.train.augment import augment_batch, augment_draws, augment_enabled
from marginface.train.batches import training_inputs
from marginface.train.config import AugmentConfig

PRE = Preprocessing(mean=127.5, std=127.5)


def _pixels(n=3, h=12, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(20, 230, (n, 3, h, w), generator=g, dtype=torch.uint8)


def _draws(n, **values):
    draws = torch.full((n, 7), 0.5)  # u = 0: every factor 1, every shift 0
    for column, value in values.items():
        draws[:, int(column[1:])] = value
    return draws


def test_off_is_bit_identical_to_no_augmentation():
    assert not augment_enabled(AugmentConfig())
    x = _pixels()
    plain = training_inputs(x, None, PRE, "cpu")
    assert torch.equal(plain, training_inputs(x, None, PRE, "cpu", augment=None))


def test_neutral_draws_change_nothing():
    x = _pixels().float()
    cfg = AugmentConfig(scale=0.1, translate=0.1, brightness=0.3, contrast=0.3, saturation=0.3,
                        greyscale=0.0)
    torch.testing.assert_close(augment_batch(x, _draws(3), cfg), x, atol=1e-3, rtol=0)


def test_translation_moves_the_crop_by_whole_pixels():
    x = _pixels(w=16).float()
    # u = 2 * 0.75 - 1 = 0.5; shift = translate * u * W = 0.25 * 0.5 * 16 = 2 pixels
    out = augment_batch(x, _draws(3, u1=0.75), AugmentConfig(translate=0.25))
    torch.testing.assert_close(out[..., :-2], x[..., 2:], atol=1e-3, rtol=0)


def test_colour_factors_by_hand():
    x = _pixels().float()
    n = x.shape[0]
    out = augment_batch(x, _draws(n, u3=1.0), AugmentConfig(brightness=0.2))  # factor 1.2
    torch.testing.assert_close(out, (x * 1.2).clamp(0, 255))
    grey = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    out = augment_batch(x, _draws(n, u5=0.0), AugmentConfig(saturation=1.0))  # factor 0
    torch.testing.assert_close(out, grey.expand_as(x))
    out = augment_batch(x, _draws(n, u4=0.0), AugmentConfig(contrast=1.0))  # factor 0
    torch.testing.assert_close(out, grey.mean(dim=(1, 2, 3), keepdim=True).expand_as(x))
    greyed = augment_batch(x, _draws(n, u6=0.1), AugmentConfig(greyscale=0.2))
    kept = augment_batch(x, _draws(n, u6=0.3), AugmentConfig(greyscale=0.2))
    assert torch.equal(greyed[:, 0], greyed[:, 1]) and torch.equal(kept, x)


def test_draws_are_a_function_of_seed_and_epoch():
    assert torch.equal(augment_draws(3, 1, 10), augment_draws(3, 1, 10))
    assert not torch.equal(augment_draws(3, 1, 10), augment_draws(3, 2, 10))
    assert torch.equal(augment_draws(3, 1, 10)[:4], augment_draws(3, 1, 4))


def test_augmented_run_resumes_exactly_and_differs_from_plain(tmp_path):
    steps = ["train.max_steps=6", "train.checkpoint_interval=3", "data.augment.scale=0.1",
             "data.augment.translate=0.05", "data.augment.brightness=0.2",
             "data.augment.contrast=0.2", "data.augment.saturation=0.2",
             "data.augment.greyscale=0.2"]
    a = states(assert_exact_resume(tmp_path, steps))
    plain = tiny_trainer(tmp_path / "c", steps[:2])
    plain.fit()
    assert not torch.equal(states(plain)["m.conv1.weight"], a["m.conv1.weight"])
