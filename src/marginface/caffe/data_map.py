"""Feed a marginface dataset to a Caffe net in place of its Data / ImageData layer.

A loaded net takes its data layer's tops as inputs (``net(data=x, label=y)``). :class:`CaffeFeed`
turns a dataset of ``(image, label)`` items (uint8 pixels: a (3, H, W) tensor as marginface's
datasets and the trainer's synthetic faces give, or an (H, W, 3) array) into those batches the
way Caffe's data layers prepare them:

1. ImageData's ``new_height``/``new_width`` (when set) resize every image (bilinear, as
   OpenCV's ``cv::resize``); ``is_color: false`` turns it grey (0.299 R + 0.587 G + 0.114 B).
2. Channels are put in Caffe's order: BGR by default, as OpenCV decodes (``channel_order``).
3. The layer's ``transform_param`` per image: ``crop_size`` (random crop in TRAIN, centre crop in
   TEST), ``mirror`` (random horizontal flip in TRAIN), then ``(pixel - mean_value) * scale``
   (``DataLayerInfo.transform``); ``mean_file`` is an error (no binaryproto reader). This is
   Caffe's own arithmetic (a product by ``scale``), kept exact for the Caffe net; a converted
   model stores it as a :class:`marginface.preprocessing.Preprocessing` with ``std = 1 / scale``
   (``marginface.caffe.convert.preprocessing_from_data``), which ``normalize`` applies.

Batches are ``{data_top: float32 (N, C, H, W), label_top: int64 (N,)}`` with the data layer's
``batch_size`` (or the one given), shuffled each epoch from ``seed``, last partial batch dropped
(Caffe's batches are always full). Iterating again starts a new epoch, so
``marginface.caffe.train.train_caffe_net`` can cycle it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from marginface.caffe.layer_types.data import DataLayerInfo
from marginface.caffe.net import CaffeNet
from marginface.preprocessing import CHANNEL_ORDERS

__all__ = ["CaffeFeed", "feed_for_net", "net_data_layer", "data_shape"]

_GREY = (0.299, 0.587, 0.114)


def net_data_layer(net: CaffeNet) -> DataLayerInfo:
    """The net's one Data / ImageData layer in its phase (ValueError when none or several)."""
    layers = [d for d in net.data_layers if d.type in ("Data", "ImageData")]
    if len(layers) != 1:
        names = [d.name for d in layers]
        raise ValueError(f"net {net.name!r} ({net.phase}): expected one Data or ImageData layer "
                         f"to feed, found {len(layers)} {names}")
    if len(layers[0].tops) not in (1, 2):
        raise ValueError(f"data layer {layers[0].name!r}: expected tops (data, label), got "
                         f"{layers[0].tops}")
    return layers[0]


def data_shape(data: DataLayerInfo, image_size: Sequence[int], batch_size: int
               ) -> tuple[int, int, int, int]:
    """The data blob's shape for images of ``image_size`` (H, W) after resize and crop."""
    h, w = (data.new_height or image_size[0]), (data.new_width or image_size[1])
    if data.crop_size:
        h = w = data.crop_size
    return (int(batch_size), 3 if data.is_color else 1, int(h), int(w))


def _pixels(item: Any, index: int) -> Tensor:
    image = item
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] not in (1, 3):
            raise ValueError(f"dataset item {index}: an image array must be (H, W, 3), got "
                             f"{image.shape}")
        image = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    if not isinstance(image, Tensor) or image.dtype != torch.uint8 or image.dim() != 3:
        what = (f"{image.dtype} {tuple(image.shape)}" if isinstance(image, Tensor)
                else type(image).__name__)
        raise ValueError(f"dataset item {index}: a Caffe data layer needs uint8 pixels "
                         f"(3, H, W), got {what}")
    return image


class _Pixels(Dataset):
    """The dataset's images as uint8 (3, H, W) tensors with integer labels."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image, label = self.dataset[index]
        return _pixels(image, index), int(label)


class CaffeFeed:
    """Batches for a Caffe net's data layer from a dataset of ``(image, label)`` items."""

    def __init__(self, data: DataLayerInfo, dataset: Dataset, *, batch_size: int | None = None,
                 channel_order: str = "BGR", seed: int = 0, shuffle: bool = True,
                 num_workers: int = 0) -> None:
        size = batch_size if batch_size is not None else data.batch_size
        if size is None or int(size) < 1:
            raise ValueError(f"data layer {data.name!r}: batch_size must be >= 1, got {size!r} "
                             "(give batch_size)")
        if channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel_order must be BGR or RGB, got {channel_order!r}")
        if len(dataset) < int(size):  # type: ignore[arg-type]
            raise ValueError(f"the dataset has {len(dataset)} images, fewer than one batch "  # type: ignore[arg-type]
                             f"of {size}")
        if data.mean_file:
            raise ValueError(f"data layer {data.name!r}: mean_file is not supported; give "
                             "mean_value")
        self.data = data
        self.batch_size = int(size)
        self.channel_order = channel_order
        self.generator = torch.Generator().manual_seed(int(seed))
        self.loader = DataLoader(_Pixels(dataset), batch_size=self.batch_size, shuffle=shuffle,
                                 drop_last=True, num_workers=num_workers,
                                 generator=torch.Generator().manual_seed(int(seed)))

    def __len__(self) -> int:
        return len(self.loader)

    def prepare(self, images: Tensor) -> Tensor:
        """uint8 (N, 3, H, W) RGB pixels -> the data blob (resize, grey/BGR, transform)."""
        x = images.float()
        d = self.data
        if d.new_height or d.new_width:
            size = (d.new_height or x.shape[-2], d.new_width or x.shape[-1])
            if tuple(x.shape[-2:]) != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if not d.is_color:
            x = sum(w * x[:, c:c + 1] for c, w in enumerate(_GREY))  # type: ignore[assignment]
        elif self.channel_order == "BGR":
            x = x.flip(1)
        # one crop and one mirror draw per image, as Caffe's DataTransformer does
        return torch.cat([d.transform(x[i:i + 1], generator=self.generator)
                          for i in range(x.shape[0])])

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        tops = self.data.tops
        for images, labels in self.loader:
            batch = {tops[0]: self.prepare(images)}
            if len(tops) > 1:
                batch[tops[1]] = labels.long()
            yield batch


def feed_for_net(net: CaffeNet, dataset: Dataset, **kwargs: Any) -> CaffeFeed:
    """A :class:`CaffeFeed` for the net's one Data / ImageData layer (keywords: CaffeFeed's)."""
    return CaffeFeed(net_data_layer(net), dataset, **kwargs)
