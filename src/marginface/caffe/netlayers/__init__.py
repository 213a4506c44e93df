"""Old name of :mod:`marginface.caffe.layer_types`, kept importable for one release."""

from marginface.caffe.layer_types import (
    DATA_LAYER_TYPES,
    LAYER_TYPES,
    V1_TYPES,
    CaffeLayer,
    DataLayerInfo,
)

__all__ = ["CaffeLayer", "DataLayerInfo", "DATA_LAYER_TYPES", "LAYER_TYPES", "V1_TYPES"]
