"""Old name of :mod:`marginface.caffe.margin_layers`, kept importable for one release."""

from marginface.caffe.margin_layers import (
    CombinedMargin,
    CosinAddm,
    InnerProduct,
    LabelSpecificAdd,
    MarginInnerProduct,
    Normalize,
    Scale,
    SoftmaxWithLoss,
)

__all__ = [
    "CombinedMargin",
    "CosinAddm",
    "InnerProduct",
    "LabelSpecificAdd",
    "MarginInnerProduct",
    "Normalize",
    "Scale",
    "SoftmaxWithLoss",
]
