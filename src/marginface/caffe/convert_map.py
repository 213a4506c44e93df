"""From a Caffe net's blobs to a marginface model's state dict, by structure.

The layers an output blob depends on are walked in net order and their blobs listed in
PyTorch's order (rules in ``marginface.caffe.convert``'s docstring: Convolution/InnerProduct
weight and bias; BatchNorm + following Scale folded into one affine BatchNorm with
``running_mean = blob0 / f``, ``running_var = blob1 / f``; PReLU slope), then paired by position
and shape with the model's tensors.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from marginface.caffe.net import CaffeNet

__all__ = ["ancestors", "caffe_tensors", "forward_to", "batchnorm_eps", "fit_shapes"]

_WEIGHTED = ("Convolution", "DepthwiseConvolution", "InnerProduct")
_PARAMETER_FREE = ("ReLU", "Eltwise", "Pooling", "Flatten", "Dropout", "Split", "Concat",
                   "Reshape", "Sigmoid", "TanH", "Softmax", "Normalize")



def ancestors(net: CaffeNet, output_blob: str) -> list[int]:
    """Indices of the layers ``output_blob`` depends on, in net order."""
    needed = {output_blob}
    keep: list[int] = []
    for i in range(len(net.infos) - 1, -1, -1):
        info = net.infos[i]
        if needed & set(info.tops):
            keep.append(i)
            needed.update(info.bottoms)
    return keep[::-1]


def forward_to(net: CaffeNet, order: list[int], inputs: dict[str, Tensor]) -> dict[str, Tensor]:
    """Run only the layers in ``order`` (those the output needs; no label, no loss)."""
    blobs = dict(inputs)
    for i in order:
        info = net.infos[i]
        blobs.update(zip(info.tops, net.layers[i](*[blobs[b] for b in info.bottoms]),
                         strict=True))
    return blobs


def caffe_tensors(net: CaffeNet, output_blob: str) -> dict[str, Tensor]:
    """The blobs feeding ``output_blob`` as PyTorch tensors in PyTorch's order.

    Keys are ``"<caffe layer>:<role>"`` (weight, bias, running_mean, running_var, slope); see the
    module docstring for the per-layer rules. Raises ValueError naming the first layer that has no
    PyTorch counterpart.
    """
    order = ancestors(net, output_blob)
    out: dict[str, Tensor] = {}
    consumed: set[int] = set()
    for position, i in enumerate(order):
        info, module = net.infos[i], net.layers[i]
        where = f"layer {info.name!r} ({info.type}, line {info.line})"
        blobs = [b.detach().float() for b in module.caffe_blobs()]
        if i in consumed or not blobs:
            if not blobs and info.type not in _PARAMETER_FREE:
                raise ValueError(f"{where}: no marginface counterpart for this layer type")
            continue
        if info.type in _WEIGHTED:
            weight = blobs[0]
            if info.type == "InnerProduct":
                inner = module.inner  # type: ignore[attr-defined]
                if inner.normalize:
                    raise ValueError(f"{where}: a normalised InnerProduct has no marginface "
                                     "backbone counterpart")
                if inner.transpose:
                    weight = weight.t()
            out[f"{info.name}:weight"] = weight
            if len(blobs) > 1:
                out[f"{info.name}:bias"] = blobs[1]
        elif info.type == "BatchNorm":
            mean, var, factor = blobs
            f = float(factor.reshape(-1)[0])
            inv = 0.0 if f == 0 else 1.0 / f
            gamma, beta = torch.ones_like(mean), torch.zeros_like(mean)
            following = order[position + 1] if position + 1 < len(order) else None
            if following is not None and net.infos[following].type == "Scale" and \
                    net.infos[following].bottoms == info.tops[:1]:
                scale_blobs = [b.detach().float() for b in net.layers[following].caffe_blobs()]
                gamma = scale_blobs[0].reshape(-1)
                if len(scale_blobs) > 1:
                    beta = scale_blobs[1].reshape(-1)
                consumed.add(following)
            out[f"{info.name}:weight"] = gamma
            out[f"{info.name}:bias"] = beta
            out[f"{info.name}:running_mean"] = mean * inv
            out[f"{info.name}:running_var"] = var * inv
        elif info.type == "PReLU":
            out[f"{info.name}:slope"] = blobs[0]
        else:
            raise ValueError(f"{where}: no marginface counterpart for a {info.type} layer with "
                             "weights here (a Scale must follow a BatchNorm)")
    return out


def batchnorm_eps(net: CaffeNet, output_blob: str) -> list[tuple[str, float]]:
    return [(net.infos[i].name, float(net.layers[i].eps))  # type: ignore[union-attr]
            for i in ancestors(net, output_blob) if net.infos[i].type == "BatchNorm"]


def _squeeze_trailing(shape: tuple[int, ...]) -> tuple[int, ...]:
    while len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def fit_shapes(foreign: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Pair by order (BN counters aside), reshaping trailing-1 differences and shared slopes.

    The first pair whose shapes do not fit, or the first unpaired tensor, is a ValueError naming
    the Caffe layer.
    """
    own = [(k, v) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]
    fitted: dict[str, Tensor] = {}
    for n, ((key, tensor), (model_key, target)) in enumerate(zip(foreign.items(), own,
                                                                 strict=False)):
        shape, want = tuple(tensor.shape), tuple(target.shape)
        if shape != want and _squeeze_trailing(shape) == _squeeze_trailing(want):
            tensor = tensor.reshape(want)
        elif key.endswith(":slope") and shape == (1,) and len(want) == 1:
            tensor = tensor.expand(want).clone()  # channel_shared PReLU slope
        elif shape != want:
            layer, role = key.split(":")
            raise ValueError(f"Caffe layer {layer!r} ({role}, {key!r}) of shape {shape} does not "
                             f"fit model tensor {model_key!r} of shape {want} (tensor {n + 1}; "
                             "the Caffe net is not this model's architecture)")
        fitted[key] = tensor
    if len(foreign) != len(own):
        if len(foreign) > len(own):
            extra = f"first Caffe tensor left over: {list(foreign)[len(own)]!r}"
        else:
            extra = f"first model tensor left over: {own[len(foreign)][0]!r}"
        raise ValueError(f"the Caffe net has {len(foreign)} tensors, the model {len(own)} "
                         f"(BatchNorm counters aside); {extra}")
    return fitted
