"""The modules a loaded Caffe net is made of, one class per Caffe (prototxt) layer type.

The net builder's layer implementations; the seed article's margin layers themselves are the
keyword-argument modules of :mod:`marginface.caffe.margin_layers`, wrapped by
:mod:`~marginface.caffe.layer_types.adapters`.

``LAYER_TYPES`` maps a Caffe ``type`` string to the class built from its ``LayerParameter``
(``cls(layer_message, phase)``); data layers are not modules (their tops are net inputs).
"""

from __future__ import annotations

from marginface.caffe.layer_types.adapters import LIBRARY_LAYER_TYPES, LibraryLayer
from marginface.caffe.layer_types.base import CaffeLayer
from marginface.caffe.layer_types.conv import Convolution
from marginface.caffe.layer_types.data import DATA_LAYER_TYPES, DataLayerInfo
from marginface.caffe.layer_types.loss import Accuracy, FocalLoss
from marginface.caffe.layer_types.norm import BatchNorm, PReLU
from marginface.caffe.layer_types.pool import Pooling
from marginface.caffe.layer_types.simple import (
    Concat,
    Dropout,
    Eltwise,
    Flatten,
    ReLU,
    Reshape,
    Sigmoid,
    Silence,
    Softmax,
    Split,
    TanH,
)

LAYER_TYPES: dict[str, type[CaffeLayer]] = {
    "Convolution": Convolution,
    "DepthwiseConvolution": Convolution,
    "BatchNorm": BatchNorm,
    "PReLU": PReLU,
    "ReLU": ReLU,
    "Sigmoid": Sigmoid,
    "TanH": TanH,
    "Pooling": Pooling,
    "Dropout": Dropout,
    "Eltwise": Eltwise,
    "Concat": Concat,
    "Flatten": Flatten,
    "Reshape": Reshape,
    "Split": Split,
    "Silence": Silence,
    "Softmax": Softmax,
    "FocalLoss": FocalLoss,
    "Accuracy": Accuracy,
    # InnerProduct, Scale, SoftmaxWithLoss and the seed article's margin layers:
    **{name: LibraryLayer for name in LIBRARY_LAYER_TYPES},
}

# V1 (``layers { type: CONVOLUTION }``) enum names of the types above.
V1_TYPES = {
    "CONVOLUTION": "Convolution", "INNER_PRODUCT": "InnerProduct", "RELU": "ReLU",
    "SIGMOID": "Sigmoid", "TANH": "TanH", "POOLING": "Pooling", "DROPOUT": "Dropout",
    "ELTWISE": "Eltwise", "CONCAT": "Concat", "FLATTEN": "Flatten", "SPLIT": "Split",
    "SILENCE": "Silence", "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "ACCURACY": "Accuracy", "DATA": "Data", "IMAGE_DATA": "ImageData",
}

__all__ = ["CaffeLayer", "DataLayerInfo", "DATA_LAYER_TYPES", "LAYER_TYPES", "V1_TYPES"]
