"""The prototxt fields the net builder understands, so that nothing is ignored silently.

Field names are those of Caffe's caffe.proto (and, for FocalLoss, the fork's). A field outside
these sets (a fork's augmentation option, say) is reported with a warning naming the layer, its
line and the fields; the net is still built.
"""

from __future__ import annotations

import warnings

from marginface.caffe.prototxt import Message

__all__ = ["KNOWN_FIELDS", "LAYER_FIELDS", "NET_FIELDS", "warn_unknown_fields",
           "warn_unknown_net_fields"]

_WINDOW = {"pad", "pad_h", "pad_w", "kernel_size", "kernel_h", "kernel_w", "stride", "stride_h",
           "stride_w", "engine"}

KNOWN_FIELDS: dict[str, set[str]] = {
    "convolution_param": _WINDOW | {"num_output", "bias_term", "dilation", "group",
                                    "weight_filler", "bias_filler", "axis", "force_nd_im2col"},
    "pooling_param": _WINDOW | {"pool", "global_pooling", "round_mode"},
    "batch_norm_param": {"use_global_stats", "moving_average_fraction", "eps"},
    "prelu_param": {"filler", "channel_shared"},
    "relu_param": {"negative_slope", "engine"},
    "dropout_param": {"dropout_ratio"},
    "eltwise_param": {"operation", "coeff", "stable_prod_grad"},
    "concat_param": {"axis", "concat_dim"},
    "flatten_param": {"axis", "end_axis"},
    "reshape_param": {"shape", "axis", "num_axes"},
    "softmax_param": {"axis", "engine"},
    "accuracy_param": {"top_k", "axis", "ignore_label"},
    "focal_loss_param": {"type", "gamma", "alpha", "beta"},
    "loss_param": {"ignore_label", "normalization", "normalize"},
    "transform_param": {"scale", "mirror", "crop_size", "mean_file", "mean_value",
                        "force_color", "force_gray"},
    "image_data_param": {"source", "batch_size", "rand_skip", "shuffle", "new_height",
                         "new_width", "is_color", "root_folder"},
    "data_param": {"source", "batch_size", "rand_skip", "backend", "prefetch"},
    "input_param": {"shape"},
}

LAYER_FIELDS = {"name", "type", "bottom", "top", "phase", "loss_weight", "param", "blobs",
                "propagate_down", "include", "exclude", "blobs_lr", "weight_decay"}
NET_FIELDS = {"name", "input", "input_shape", "input_dim", "force_backward", "state",
              "debug_info", "layer", "layers"}


def _warn(where: str, what: str, names: list[str]) -> None:
    warnings.warn(f"{where}: ignoring field(s) {names} of {what} (not used by marginface)",
                  stacklevel=3)


def warn_unknown_fields(layer: Message, where: str) -> None:
    """Warn about layer fields and ``*_param`` fields that the builder does not use."""
    odd = [f for f in layer.fields() if f not in LAYER_FIELDS and not f.endswith("_param")]
    if odd:
        _warn(where, "the layer", odd)
    for param, known in KNOWN_FIELDS.items():
        value = layer.get(param)
        if isinstance(value, Message):
            unknown = [f for f in value.fields() if f not in known]
            if unknown:
                _warn(where, param, unknown)


def warn_unknown_net_fields(root: Message) -> None:
    odd = [f for f in root.fields() if f not in NET_FIELDS]
    if odd:
        warnings.warn(f"net: ignoring field(s) {odd} (not used by marginface)", stacklevel=3)
