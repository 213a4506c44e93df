"""The modules a loaded Caffe net is made of, one class per Caffe layer type.

``LAYER_TYPES`` maps a Caffe ``type`` string to the class built from its ``LayerParameter``
(``cls(layer_message, phase)``); data layers are not modules (their tops are net inputs).
"""

from __future__ import annotations

from marginface.caffe.netlayers.base import CaffeLayer
from marginface.caffe.netlayers.conv import Convolution
from marginface.caffe.netlayers.data import DATA_LAYER_TYPES, DataLayerInfo
from marginface.caffe.netlayers.loss import Accuracy, FocalLoss
from marginface.caffe.netlayers.norm import BatchNorm, PReLU
from marginface.caffe.netlayers.pool import Pooling
from marginface.caffe.netlayers.seed import LIBRARY_LAYER_TYPES, LibraryLayer
from marginface.caffe.netlayers.simple import (
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
    # InnerProduct, Scale, SoftmaxWithLoss and the seed's margin layers:
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
