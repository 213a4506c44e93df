"""Detector weights: the ``mtcnn`` package's arrays (read without importing it), and checks.

The ``mtcnn`` package (PyPI, MIT licence, Iván de Paz Centeno) ships the published MTCNN weights
as ``mtcnn/assets/weights/{pnet,rnet,onet}.lz4``: each a joblib pickle (lz4-compressed) of the
Keras ``get_weights()`` list of NumPy arrays. Keras layouts, mapped to PyTorch's here:

- conv kernel (kh, kw, in, out) -> (out, in, kh, kw); the Keras model runs on the untransposed
  image as this package does, so no spatial transpose is needed;
- PReLU slopes (1, 1, C) -> (C,);
- dense (in, out) -> (out, in); the first dense layer of R-Net/O-Net follows a Keras
  ``Permute((2, 1, 3))``, so its inputs are ordered (w, h, c) and are reordered to PyTorch's
  (c, h, w) flatten order.

The package's ``__init__`` imports TensorFlow, so the files are located through the import spec's
search path and never imported. The Caffe det1-det3 files are mapped by
:mod:`marginface.caffe.mtcnn` into the same state dict.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from marginface.detect.networks import NETWORKS

__all__ = ["LAYOUT", "mtcnn_package_files", "read_mtcnn_package", "load_detector_state"]

# Per network, the parameters in the order of the Keras weight list, with their layout kind.
# "fc" is the dense layer after the (w, h, c) flatten; "dense" a plain one.
LAYOUT: dict[str, list[tuple[str, str]]] = {
    "pnet": [("conv1", "conv"), ("prelu1", "prelu"), ("conv2", "conv"), ("prelu2", "prelu"),
             ("conv3", "conv"), ("prelu3", "prelu"), ("bbox", "conv"), ("score", "conv")],
    "rnet": [("conv1", "conv"), ("prelu1", "prelu"), ("conv2", "conv"), ("prelu2", "prelu"),
             ("conv3", "conv"), ("prelu3", "prelu"), ("fc", "fc"), ("prelu4", "prelu"),
             ("bbox", "dense"), ("score", "dense")],
    "onet": [("conv1", "conv"), ("prelu1", "prelu"), ("conv2", "conv"), ("prelu2", "prelu"),
             ("conv3", "conv"), ("prelu3", "prelu"), ("conv4", "conv"), ("prelu4", "prelu"),
             ("fc", "fc"), ("prelu5", "prelu"), ("bbox", "dense"), ("landmarks", "dense"),
             ("score", "dense")],
}


def mtcnn_package_files() -> dict[str, Path]:
    """``{"pnet": path, ...}``: the installed ``mtcnn`` package's weights (never imported)."""
    spec = importlib.util.find_spec("mtcnn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the 'mtcnn' package (the detector's weights) is not installed: pip install mtcnn"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "assets" / "weights"
    files = {name: folder / f"{name}.lz4" for name in NETWORKS}
    for name, path in files.items():
        if not path.is_file():
            raise FileNotFoundError(f"MTCNN weights file for {name} not found: {path}")
    return files


def _keras_arrays(path: Path) -> list[np.ndarray]:
    import joblib  # the mtcnn package's own dependency; imported here, not at module import

    try:
        arrays = joblib.load(path)
    except Exception as error:  # joblib raises many kinds for a damaged file
        raise ValueError(f"{path}: cannot read MTCNN weights ({error})") from error
    if not isinstance(arrays, (list, tuple)):
        raise ValueError(f"{path}: expected a list of arrays, got {type(arrays).__name__}")
    return [np.asarray(a, dtype=np.float32) for a in arrays]


def _fc_from_whc(kernel: np.ndarray, channels: int, path: Path, layer: str) -> np.ndarray:
    side = int(round((kernel.shape[0] / channels) ** 0.5))
    if side * side * channels != kernel.shape[0]:
        raise ValueError(f"{path}, layer {layer}: {kernel.shape} is not a (w*h*{channels}, out)")
    out = kernel.shape[1]
    return kernel.reshape(side, side, channels, out).transpose(3, 2, 1, 0).reshape(out, -1)


def read_mtcnn_package(files: dict[str, Path] | None = None) -> dict[str, torch.Tensor]:
    """The detector state dict (``pnet.conv1.weight`` ...) from the mtcnn package's .lz4 files."""
    files = mtcnn_package_files() if files is None else {k: Path(v) for k, v in files.items()}
    state: dict[str, torch.Tensor] = {}
    for net, layout in LAYOUT.items():
        path = files[net]
        if not path.is_file():
            raise FileNotFoundError(f"MTCNN weights file for {net} not found: {path}")
        arrays = iter(_keras_arrays(path))
        channels = 0
        for layer, kind in layout:
            try:
                first = next(arrays)
                key = f"{net}.{layer}"
                if kind == "prelu":
                    state[f"{key}.weight"] = torch.from_numpy(first.reshape(-1).copy())
                    continue
                bias = next(arrays)
            except StopIteration:
                raise ValueError(f"{path}: weights end before layer {layer}") from None
            if kind == "conv":
                if first.ndim != 4:
                    raise ValueError(f"{path}, layer {layer}: conv kernel shape {first.shape}")
                weight = first.transpose(3, 2, 0, 1)
                channels = weight.shape[0]
            elif kind == "fc":
                weight = _fc_from_whc(first, channels, path, layer)
            else:
                weight = first.T
            state[f"{key}.weight"] = torch.from_numpy(np.ascontiguousarray(weight))
            state[f"{key}.bias"] = torch.from_numpy(bias.reshape(-1).copy())
        if next(arrays, None) is not None:
            raise ValueError(f"{path}: more arrays than the {net} layers")
    return state


def load_detector_state(
    nets: dict[str, torch.nn.Module], state: dict[str, torch.Tensor], source: str
) -> None:
    """Copy ``state`` into ``nets``; a missing or wrongly shaped entry names layer and source."""
    for net_name, net in nets.items():
        for key, param in net.state_dict().items():
            full = f"{net_name}.{key}"
            if full not in state:
                raise ValueError(f"{source}: no weights for layer {full}")
            value = torch.as_tensor(state[full])
            if tuple(value.shape) != tuple(param.shape):
                raise ValueError(
                    f"{source}: layer {full} has shape {tuple(value.shape)}, the detector "
                    f"expects {tuple(param.shape)}"
                )
            param.copy_(value.to(param.dtype))
    extra = sorted(set(state) - {f"{n}.{k}" for n, net in nets.items() for k in net.state_dict()})
    if extra:
        raise ValueError(f"{source}: unexpected entries {extra[:5]}")
