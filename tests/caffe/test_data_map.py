"""A marginface dataset fed to a Caffe net's data layer (marginface.caffe.data_map)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from marginface.caffe import load_net
from marginface.caffe.data_map import CaffeFeed, data_shape, feed_for_net

NET = """
name: "tiny"
layer { name: "data" type: "ImageData" top: "data" top: "label"
  include { phase: %s }
  transform_param { scale: 0.5 mean_value: 100 mean_value: 110 mean_value: 120
                    crop_size: 4 mirror: true }
  image_data_param { source: "list.txt" batch_size: 3 new_height: 6 new_width: 6 } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
  inner_product_param { num_output: 5 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
"""


def _dataset(n: int = 7, size: int = 6) -> list[tuple[torch.Tensor, int]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8), i % 5)
            for i in range(n)]


def test_test_phase_is_caffe_transform_of_bgr_pixels():
    net = load_net(NET % "TEST", "TEST")
    data = _dataset()
    feed = feed_for_net(net, data, shuffle=False)
    assert len(feed) == 2  # 7 images, batches of the layer's 3, the partial one dropped
    batch = next(iter(feed))
    assert set(batch) == {"data", "label"} and batch["label"].dtype == torch.int64
    assert batch["label"].tolist() == [0, 1, 2]
    image = data[0][0].float()
    bgr = image.flip(0)[:, 1:5, 1:5]  # centre crop 4 of 6
    expected = (bgr - torch.tensor([100.0, 110.0, 120.0]).view(3, 1, 1)) * 0.5
    assert torch.equal(batch["data"][0], expected)
    assert data_shape(feed.data, (6, 6), 3) == (3, 3, 4, 4)
    out = net(**batch)
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])


def test_train_phase_crops_and_mirrors_per_image():
    net = load_net(NET % "TRAIN", "TRAIN")
    image = torch.arange(36, dtype=torch.uint8).reshape(1, 6, 6).expand(3, 6, 6).contiguous()
    feed = feed_for_net(net, [(image, 0)] * 60, batch_size=60, channel_order="RGB", seed=1)
    x = next(iter(feed))["data"][:, 0] / 0.5 + 100  # back to pixels of channel 0
    crops = {tuple(v.reshape(-1).tolist()) for v in x}
    windows = {tuple(image[0, t:t + 4, left:left + 4].float().reshape(-1).tolist())
               for t in range(3) for left in range(3)}
    mirrored = {tuple(image[0, t:t + 4, left:left + 4].flip(-1).float().reshape(-1).tolist())
                for t in range(3) for left in range(3)}
    assert crops <= windows | mirrored
    assert crops & windows and crops & mirrored and len(crops) > 6  # varied per image


def test_resize_grey_and_arrays():
    text = (NET % "TEST").replace("crop_size: 4 mirror: true", "").replace(
        "mean_value: 100 mean_value: 110 mean_value: 120", "mean_value: 0").replace(
        "new_width: 6 }", "new_width: 6 is_color: false }")
    net = load_net(text, "TEST")
    arrays = [(np.full((12, 12, 3), (10, 20, 30), dtype=np.uint8), 1)] * 3
    batch = next(iter(feed_for_net(net, arrays)))
    assert batch["data"].shape == (3, 1, 6, 6)
    grey = 0.299 * 10 + 0.587 * 20 + 0.114 * 30
    assert torch.allclose(batch["data"], torch.full((3, 1, 6, 6), grey * 0.5), atol=1e-4)


def test_bad_feeds():
    net = load_net(NET % "TEST", "TEST")
    with pytest.raises(ValueError, match=r"dataset item \d: a Caffe data layer needs uint8"):
        next(iter(feed_for_net(net, [(torch.rand(3, 6, 6), 0)] * 3)))
    with pytest.raises(ValueError, match="fewer than one batch of 3"):
        feed_for_net(net, _dataset(2))
    with pytest.raises(ValueError, match="expected one Data or ImageData layer"):
        feed_for_net(load_net("input: 'data' input_shape { dim: 1 dim: 3 dim: 4 dim: 4 }\n",
                              "TEST"), _dataset())
    mean_file = (NET % "TEST").replace("mean_value: 100", "mean_file: 'm.binaryproto'")
    with pytest.raises(ValueError, match="mean_file is not supported"):
        CaffeFeed(load_net(mean_file, "TEST").data_layers[0], _dataset())
