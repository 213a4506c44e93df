"""The seed's Caffe layers as PyTorch modules, with Caffe's names, fields and CPU forward values.

``module.train()`` is Caffe's TRAIN phase and ``module.eval()`` its TEST phase. Layers with two
bottoms take them positionally (``layer(bottom, label)``); layers with several tops return a tuple.
See docs/caffe.md, section "Seed layers", for where gradients differ from Caffe's backward.
"""

from marginface.caffe.layers.combined_margin import CombinedMargin
from marginface.caffe.layers.cosin_add_m import CosinAddm
from marginface.caffe.layers.inner_product import InnerProduct
from marginface.caffe.layers.label_specific_add import LabelSpecificAdd
from marginface.caffe.layers.margin_inner_product import MarginInnerProduct
from marginface.caffe.layers.normalize import Normalize
from marginface.caffe.layers.scale import Scale
from marginface.caffe.layers.softmax_loss import SoftmaxWithLoss

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
