"""Pyramid scales (hand values) and crops (against direct slicing)."""

from __future__ import annotations

import pytest
import torch

from marginface.detect.stages import crop_boxes, normalise, pyramid_scales


def test_pyramid_scales_hand_values():
    # 250x250, min face 20: base 0.6, sides 150, 106.35, ... -> 8 levels (150 * 0.709^7 = 13.4)
    scales = pyramid_scales(250, 250)
    assert len(scales) == 8
    assert scales[0] == pytest.approx(0.6)
    assert scales[1] / scales[0] == pytest.approx(0.709)
    assert min(250, 250) * scales[-1] >= 12 > min(250, 250) * scales[-1] * 0.709
    assert pyramid_scales(30, 100, min_face=40) == []  # 30 * 0.3 = 9 < 12
    with pytest.raises(ValueError, match="min_face"):
        pyramid_scales(100, 100, min_face=8)
    with pytest.raises(ValueError, match="factor"):
        pyramid_scales(100, 100, factor=1.0)


def test_crop_at_native_size_is_the_slice_and_outside_is_zero_pixels():
    images = torch.arange(2 * 3 * 40 * 50, dtype=torch.float32).reshape(2, 3, 40, 50) % 251
    boxes = torch.tensor([[5.0, 7.0, 28.0, 30.0], [-4.0, -4.0, 19.0, 19.0]])
    crops = crop_boxes(images, torch.tensor([1, 0]), boxes, 24)
    assert torch.allclose(crops[0], normalise(images[1, :, 7:31, 5:29]), atol=1e-5)
    # Outside the image MTCNN pads with pixel value 0 (normalised: -0.996).
    assert torch.allclose(crops[1, :, :4, :], torch.full((3, 4, 24), normalise(torch.tensor(0.0))))
    assert torch.allclose(crops[1, :, 4:, 4:], normalise(images[0, :, :20, :20]), atol=1e-5)


def test_crop_downscale_is_block_mean_of_uniform_blocks():
    # A 48x48 box of 2x2 uniform blocks shrunk to 24: every output pixel is one block's value.
    blocks = torch.rand(1, 3, 24, 24) * 255
    image = blocks.repeat_interleave(2, 2).repeat_interleave(2, 3)
    crop = crop_boxes(image, torch.tensor([0]), torch.tensor([[0.0, 0.0, 47.0, 47.0]]), 24)
    assert torch.allclose(crop[0], normalise(blocks[0]), atol=1e-4)
