"""Copy ``.caffemodel`` weights into a built :class:`CaffeNet` and back.

Blobs are matched to layers by name and, within a layer, by Caffe's blob order (each layer
module's ``caffe_blobs()``: Convolution/InnerProduct weight then bias, BatchNorm mean, variance,
scale factor, Scale gamma then beta, PReLU slope). A blob whose shape differs from the layer's is
an error naming the layer and both shapes; old files store 4-D (num, channels, height, width)
shapes such as (1, 1, N, K) for an InnerProduct weight, which are accepted where the values line
up after dropping leading ones. Layers only in the file, or only in the net, are reported (a
warning, or a ValueError with ``strict=True``). The binary I/O is ``marginface.caffe.caffemodel``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from marginface.caffe.net import CaffeNet

__all__ = ["LoadReport", "load_caffemodel", "save_caffemodel"]


@dataclass
class LoadReport:
    """What :func:`load_caffemodel` did."""

    loaded: list[str] = field(default_factory=list)
    only_in_file: list[str] = field(default_factory=list)
    only_in_net: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (f"loaded {len(self.loaded)} layers; in the file but not the net: "
                f"{self.only_in_file or 'none'}; in the net but not the file: "
                f"{self.only_in_net or 'none'}")


def _squeeze_leading(shape: tuple[int, ...]) -> tuple[int, ...]:
    while len(shape) > 1 and shape[0] == 1:
        shape = shape[1:]
    return shape


def _compatible(file_shape: tuple[int, ...], net_shape: tuple[int, ...]) -> bool:
    if file_shape == net_shape:
        return True
    return _squeeze_leading(file_shape) == _squeeze_leading(net_shape)


def load_caffemodel(net: CaffeNet, path: str | Path, *, strict: bool = False) -> LoadReport:
    """Load the blobs of the ``.caffemodel`` at ``path`` into ``net`` (in place).

    The net's layers must have their parameters (give ``input_shapes`` to ``load_net`` for nets
    whose input shapes the prototxt leaves open). Returns a :class:`LoadReport`.
    """
    from marginface.caffe.caffemodel import read_caffemodel

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"caffemodel not found: {path}")
    entries = read_caffemodel(path)
    report = LoadReport()
    names = set(net.layer_names)
    seen: set[str] = set()
    for entry in entries:
        if not entry.blobs:
            continue
        if entry.name not in names:
            report.only_in_file.append(entry.name)
            continue
        module = net.layer(entry.name)
        where = f"layer {entry.name!r} ({module.caffe_type})"
        if not module.ready:
            raise ValueError(f"{where} has no parameters yet (its input shape is unknown); "
                             "give input_shapes to load_net")
        targets = module.caffe_blobs()
        if len(entry.blobs) != len(targets):
            raise ValueError(f"{where}: the file has {len(entry.blobs)} blobs, the layer "
                             f"{len(targets)}")
        for j, (blob, target) in enumerate(zip(entry.blobs, targets, strict=True)):
            array = np.asarray(blob)
            fshape, nshape = tuple(array.shape), tuple(target.shape)
            if not _compatible(fshape, nshape):
                raise ValueError(f"{where}: blob {j} has shape {fshape} in {path.name}, the "
                                 f"layer expects {nshape}")
            with torch.no_grad():
                target.copy_(torch.from_numpy(array.reshape(nshape).astype(np.float32)))
        report.loaded.append(entry.name)
        seen.add(entry.name)
    report.only_in_net = [name for name in net.layer_names
                          if net.layer(name).caffe_blobs() and name not in seen]
    if report.only_in_file or report.only_in_net:
        message = f"{path.name}: {report}"
        if strict:
            raise ValueError(message)
        warnings.warn(message, stacklevel=2)
    return report


def save_caffemodel(net: CaffeNet, path: str | Path) -> int:
    """Write every parametrised layer's blobs to a ``.caffemodel``; returns the layer count."""
    from marginface.caffe.caffemodel import LayerBlobs, write_caffemodel

    entries = []
    for name in net.layer_names:
        module = net.layer(name)
        if not module.ready:
            raise ValueError(f"layer {name!r} ({module.caffe_type}) has no parameters yet; run "
                             "one forward or give input_shapes to load_net")
        blobs = module.caffe_blobs()
        if blobs:
            entries.append(LayerBlobs(name, module.caffe_type,
                                      [b.detach().cpu().float().numpy().copy() for b in blobs]))
    write_caffemodel(Path(path), entries)
    return len(entries)
