"""Convert a Caffe face model (prototxt + caffemodel) into a marginface model file.

The Caffe net is built in its TEST phase and its weights are read; the layers the embedding blob
(``output_blob``, default the net's last top) depends on are walked in file order and their blobs
become a PyTorch-ordered list of tensors, which is paired by order and shape with the registered
marginface model's state dict (the same idea as :func:`marginface.models.import_state_dict`):

- Convolution / DepthwiseConvolution / InnerProduct: weight, bias (InnerProduct with
  ``transpose`` is transposed; ``normalize: true`` has no marginface counterpart: an error).
  A tensor whose shape differs from the model's only by trailing 1s (an InnerProduct weight
  (D, C) where the model has a 1x1 convolution (D, C, 1, 1)) is reshaped.
- BatchNorm (blobs mean sum, variance sum, scale factor f) followed by a Scale on its top
  (gamma, beta) become one affine ``nn.BatchNorm``: ``weight = gamma``, ``bias = beta``,
  ``running_mean = blob0 / f``, ``running_var = blob1 / f`` (0 when f = 0, as Caffe). Without a
  Scale the affine part is the identity (weight 1, bias 0). Caffe's ``eps`` must equal the
  model's BatchNorm eps (both compute ``(x - mean) / sqrt(var + eps)``).
- PReLU: the slope (a ``channel_shared`` slope is broadcast to every channel).
- Parameter-free layers (ReLU, Eltwise, Pooling, Flatten, Dropout, ...) carry nothing.

Weights alone cannot prove two nets compute the same thing (an Eltwise coefficient, a padding),
so :func:`convert_caffe_model` also runs both nets on one random input and reports the largest
difference of the embeddings; over ``tolerance`` (relative to the largest embedding value) it is
an error. The file's preprocessing comes from the Data/ImageData layer's ``transform_param``
(``(x - mean_value) * scale`` -> mean, std = 1/scale) when the prototxt has one, else the model
family's default; the channel order defaults to BGR, Caffe's (OpenCV's) order.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from marginface.caffe.convert_map import (
    ancestors,
    batchnorm_eps,
    caffe_tensors,
    fit_shapes,
    forward_to,
)
from marginface.caffe.layer_types.data import DataLayerInfo
from marginface.caffe.net import CaffeNet, load_net
from marginface.models import (
    ImportReport,
    Preprocessing,
    create_model,
    default_preprocessing,
    import_state_dict,
)

__all__ = ["ConversionReport", "caffe_tensors", "convert_caffe_model", "convert_caffe_to_file",
           "preprocessing_from_data"]

@dataclass
class ConversionReport:
    """What :func:`convert_caffe_model` mapped, and how close the two nets' embeddings are."""

    output_blob: str
    input_blob: str
    mapping: ImportReport
    max_abs_diff: float | None = None
    max_abs_embedding: float | None = None
    skipped_layers: list[str] = field(default_factory=list)

    @property
    def applied(self) -> bool:
        return self.mapping.applied

    def table(self) -> str:
        lines = [self.mapping.table(), f"input blob {self.input_blob!r} -> output blob "
                 f"{self.output_blob!r}"]
        if self.skipped_layers:
            lines.append(f"layers after the output (not converted): {self.skipped_layers}")
        if self.max_abs_diff is not None:
            lines.append(f"embedding check on a random input: max |caffe - marginface| = "
                         f"{self.max_abs_diff:.3g} (largest |embedding| "
                         f"{self.max_abs_embedding:.3g})")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def preprocessing_from_data(data: DataLayerInfo, model_name: str, input_size: tuple[int, int],
                            channel_order: str = "BGR") -> Preprocessing:
    """Caffe's ``(pixel - mean_value) * scale`` as a :class:`Preprocessing` (std = 1/scale)."""
    if data.mean_file:
        raise ValueError(f"data layer {data.name!r}: mean_file cannot be stored in a model file; "
                         "pass preprocessing=")
    if data.scale <= 0:
        raise ValueError(f"data layer {data.name!r}: scale must be > 0, got {data.scale}")
    means = data.mean_value or [0.0]
    if len(means) not in (1, 3):
        raise ValueError(f"data layer {data.name!r}: {len(means)} mean_value entries (1 or 3)")
    mean = tuple(means * 3 if len(means) == 1 else means)
    template = default_preprocessing(model_name, input_size).alignment_template
    return Preprocessing(mean=mean, std=(1.0 / data.scale,) * 3, channel_order=channel_order,
                         alignment_template=template)


def _load_caffe(prototxt: str | Path, caffemodel: str | Path,
                input_size: tuple[int, int] | None) -> tuple[CaffeNet, list[str]]:
    from marginface.caffe.weights import load_caffemodel

    probe = load_net(prototxt, "TEST")
    images = [n for n in probe.input_names if len(probe.blob_shapes.get(n, ())) == 4]
    first = images[0] if images else (probe.input_names[0] if probe.input_names else None)
    if first is None:
        raise ValueError(f"{prototxt}: the net has no input blob")
    shapes = {}
    if input_size is None and first not in probe.blob_shapes:
        raise ValueError(f"{prototxt}: the shape of input {first!r} is not in the prototxt "
                         "(a Data/ImageData layer); give input_size")
    if input_size is not None:
        channels = probe.blob_shapes.get(first, (1, 3))[1]
        shapes[first] = (1, channels, int(input_size[0]), int(input_size[1]))
    net = load_net(prototxt, "TEST", input_shapes=shapes) if shapes else probe
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        report = load_caffemodel(net, caffemodel)
    return net, report.only_in_net


def convert_caffe_model(prototxt: str | Path, caffemodel: str | Path, *, model_name: str,
                        input_size: tuple[int, int] | None = None,
                        embedding_dim: int | None = None, output_blob: str | None = None,
                        preprocessing: Preprocessing | None = None,
                        channel_order: str | None = None,
                        options: dict[str, Any] | None = None, dry_run: bool = False,
                        check: bool = True, tolerance: float = 1e-4, seed: int = 0,
                        ) -> tuple[nn.Module, ConversionReport]:
    """Build ``create_model(model_name, ...)`` holding the Caffe net's weights.

    ``input_size`` (H, W) and ``embedding_dim`` default to the Caffe net's input shape and the
    output blob's size. ``preprocessing`` (default: from the data layer, see the module
    docstring) and ``channel_order`` go into the model's config. ``dry_run`` maps and checks
    shapes but copies nothing (and skips the embedding check). Returns the model (eval mode;
    ``save_model`` writes it) and the report.
    """
    net, missing = _load_caffe(prototxt, caffemodel, input_size)
    output = output_blob or (net.infos[-1].tops[0] if net.infos else None)
    known = {t for info in net.infos for t in info.tops}
    if output is None or output not in known:
        raise ValueError(f"output_blob {output!r} is not a top of {prototxt} "
                         f"(tops: {sorted(known)[:10]}...)")
    order = ancestors(net, output)
    inputs = sorted({b for i in order for b in net.infos[i].bottoms} & set(net.input_names))
    if len(inputs) != 1:
        raise ValueError(f"output_blob {output!r} depends on inputs {inputs}; exactly one image "
                         "input is expected")
    unloaded = [net.infos[i].name for i in order if net.infos[i].name in missing]
    if unloaded:
        raise ValueError(f"{caffemodel}: no weights for layer {unloaded[0]!r}, which "
                         f"{output!r} depends on")
    in_shape = net.blob_shapes.get(inputs[0])
    out_shape = net.blob_shapes.get(output)
    if in_shape is None or out_shape is None:
        raise ValueError(f"{prototxt}: the input shape is unknown; give input_size")
    size = (int(in_shape[2]), int(in_shape[3])) if input_size is None else tuple(input_size)
    dim = int(math.prod(out_shape[1:])) if embedding_dim is None else int(embedding_dim)
    model = create_model(model_name, input_size=size, embedding_dim=dim, **(options or {}))
    foreign = caffe_tensors(net, output)
    bn_modules = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for (name, eps), module in zip(batchnorm_eps(net, output), bn_modules, strict=False):
        if not math.isclose(eps, module.eps, rel_tol=1e-6):
            raise ValueError(f"layer {name!r} (BatchNorm): eps {eps} differs from the model's "
                             f"BatchNorm eps {module.eps}")
    mapping = import_state_dict(model, fit_shapes(foreign, model), dry_run=dry_run)
    data = next((d for d in net.data_layers if d.type in ("Data", "ImageData")), None)
    if preprocessing is None:
        if data is not None:
            preprocessing = preprocessing_from_data(data, model_name, size)
        else:
            preprocessing = dataclasses.replace(default_preprocessing(model_name, size),
                                                channel_order="BGR")
    if channel_order is not None:
        preprocessing = dataclasses.replace(preprocessing, channel_order=channel_order)
    model.config = dataclasses.replace(model.config, preprocessing=preprocessing)
    model.eval()
    skipped = [info.name for j, info in enumerate(net.infos) if j not in set(order)]
    report = ConversionReport(output, inputs[0], mapping, skipped_layers=skipped)
    if check and not dry_run:
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(2, int(in_shape[1]), *size, generator=generator)
        with torch.no_grad():
            expected = forward_to(net, order, {inputs[0]: x})[output].reshape(2, -1)
            got = model(x).reshape(2, -1)
        report.max_abs_diff = float((expected - got).abs().max())
        report.max_abs_embedding = float(expected.abs().max())
        if report.max_abs_diff > tolerance * max(report.max_abs_embedding, 1.0):
            raise ValueError(f"the converted {model_name!r} does not reproduce the Caffe net: "
                             f"max |difference| {report.max_abs_diff:.3g} on a random input "
                             f"(largest |embedding| {report.max_abs_embedding:.3g}); the "
                             "structures differ beyond their weights")
    return model, report


def convert_caffe_to_file(prototxt: str | Path, caffemodel: str | Path, output: str | Path, *,
                          model_name: str, **kwargs: Any) -> ConversionReport:
    """:func:`convert_caffe_model`, then ``save_model`` to ``output`` (unless ``dry_run``)."""
    from marginface.models import save_model

    model, report = convert_caffe_model(prototxt, caffemodel, model_name=model_name, **kwargs)
    if report.applied:
        save_model(model, output)
    return report
