"""MTCNN's published Caffe weights (det1/det2/det3 .caffemodel) -> a marginface.detect state dict.

The reference MTCNN code (MATLAB + Caffe) feeds each network the *transposed* image (MATLAB's
column-major W x H x C array seen by Caffe as C x H x W), in RGB order, scaled
``(x - 127.5) * 0.0078125``. marginface.detect runs on the untransposed image, so:

- conv kernels (out, in, kh, kw) have their two spatial axes swapped;
- the first fully connected layer (InnerProduct after the last conv) reads its input flattened as
  (c, w, h); its columns are reordered to PyTorch's (c, h, w);
- channel order, PReLU slopes, biases and the other InnerProducts are unchanged; the output heads'
  meaning (box offsets x1, y1, x2, y2; landmarks x1..x5, y1..y5) is in image coordinates already.

R-Net's Caffe file also holds a landmark head (``conv5-3``) that the cascade never uses; it is
skipped. The same weights ship in the ``mtcnn`` package (Keras layout), see docs/detection.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from marginface.caffe.caffemodel import read_caffemodel

__all__ = ["CAFFE_LAYERS", "read_mtcnn_caffe"]

# network -> (file stem, {caffe layer: (detector layer, kind)}); kind as in detect.weights.LAYOUT
CAFFE_LAYERS: dict[str, tuple[str, dict[str, tuple[str, str]]]] = {
    "pnet": ("det1", {"conv1": ("conv1", "conv"), "PReLU1": ("prelu1", "prelu"),
                      "conv2": ("conv2", "conv"), "PReLU2": ("prelu2", "prelu"),
                      "conv3": ("conv3", "conv"), "PReLU3": ("prelu3", "prelu"),
                      "conv4-1": ("score", "conv"), "conv4-2": ("bbox", "conv")}),
    "rnet": ("det2", {"conv1": ("conv1", "conv"), "prelu1": ("prelu1", "prelu"),
                      "conv2": ("conv2", "conv"), "prelu2": ("prelu2", "prelu"),
                      "conv3": ("conv3", "conv"), "prelu3": ("prelu3", "prelu"),
                      "conv4": ("fc", "fc"), "prelu4": ("prelu4", "prelu"),
                      "conv5-1": ("score", "dense"), "conv5-2": ("bbox", "dense")}),
    "onet": ("det3", {"conv1": ("conv1", "conv"), "prelu1": ("prelu1", "prelu"),
                      "conv2": ("conv2", "conv"), "prelu2": ("prelu2", "prelu"),
                      "conv3": ("conv3", "conv"), "prelu3": ("prelu3", "prelu"),
                      "conv4": ("conv4", "conv"), "prelu4": ("prelu4", "prelu"),
                      "conv5": ("fc", "fc"), "prelu5": ("prelu5", "prelu"),
                      "conv6-1": ("score", "dense"), "conv6-2": ("bbox", "dense"),
                      "conv6-3": ("landmarks", "dense")}),
}


def _convert(blob: np.ndarray, kind: str, channels: int, path: Path, layer: str) -> np.ndarray:
    if kind == "conv":
        if blob.ndim != 4:
            raise ValueError(f"{path}, layer {layer}: convolution weight shape {blob.shape}")
        return blob.transpose(0, 1, 3, 2)
    if kind == "fc":
        out = blob.shape[0]
        side = int(round((blob.size / out / channels) ** 0.5))
        if side * side * channels * out != blob.size:
            raise ValueError(f"{path}, layer {layer}: {blob.shape} is not (out, {channels}*w*h)")
        return blob.reshape(out, channels, side, side).transpose(0, 1, 3, 2).reshape(out, -1)
    return blob.reshape(blob.shape[0], -1) if kind == "dense" else blob.reshape(-1)


def read_mtcnn_caffe(folder: str | Path) -> dict[str, torch.Tensor]:
    """State dict for ``marginface.detect.FaceDetector`` from ``folder``/det{1,2,3}.caffemodel."""
    folder = Path(folder)
    state: dict[str, torch.Tensor] = {}
    for net, (stem, mapping) in CAFFE_LAYERS.items():
        path = folder / f"{stem}.caffemodel"
        if not path.is_file():
            raise FileNotFoundError(f"MTCNN Caffe weights for {net} not found: {path}")
        layers = {layer.name: layer for layer in read_caffemodel(path)}
        channels = 0
        for caffe_name, (name, kind) in mapping.items():
            if caffe_name not in layers or not layers[caffe_name].blobs:
                raise ValueError(f"{path}: layer {caffe_name} ({net}.{name}) has no weights")
            blobs = layers[caffe_name].blobs
            weight = _convert(np.asarray(blobs[0], np.float32), kind, channels, path, caffe_name)
            if kind == "conv":
                channels = weight.shape[0]
            state[f"{net}.{name}.weight"] = torch.from_numpy(np.ascontiguousarray(weight))
            if kind != "prelu":
                if len(blobs) < 2:
                    raise ValueError(f"{path}: layer {caffe_name} has no bias")
                state[f"{net}.{name}.bias"] = torch.from_numpy(blobs[1].reshape(-1).copy())
    return state
