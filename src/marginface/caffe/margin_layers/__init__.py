"""The seed article's Caffe layers as PyTorch modules: Caffe's names, fields, CPU forward values.

(The net builder's per-prototxt-type modules are :mod:`marginface.caffe.layer_types`; these are
the margin layers' maths, usable alone with keyword arguments.)

``module.train()`` is Caffe's TRAIN phase and ``module.eval()`` its TEST phase. Layers with two
bottoms take them positionally (``layer(bottom, label)``); layers with several tops return a tuple.
See docs/caffe.md, section "Margin layers", for where gradients differ from Caffe's backward.
"""

from marginface.caffe.margin_layers.combined_margin import CombinedMargin
from marginface.caffe.margin_layers.cosin_add_m import CosinAddm
from marginface.caffe.margin_layers.inner_product import InnerProduct
from marginface.caffe.margin_layers.label_specific_add import LabelSpecificAdd
from marginface.caffe.margin_layers.margin_inner_product import MarginInnerProduct
from marginface.caffe.margin_layers.normalize import Normalize
from marginface.caffe.margin_layers.scale import Scale
from marginface.caffe.margin_layers.softmax_loss import SoftmaxWithLoss

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
