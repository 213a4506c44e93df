"""Build a PyTorch module from a Caffe net definition (``.prototxt``).

``load_net(path_or_text, phase)`` keeps the layers that the phase's NetStateRules include, builds
one module per layer (see :mod:`marginface.caffe.layer_types`) and runs them in file order, passing
blobs by name; in-place layers (top == bottom) simply rebind the name. The net's inputs are its
``input`` fields and the tops of Data/ImageData/Input layers, given as keyword tensors:
``net(data=x, label=y)`` returns a dict of every blob by name (its final value). A net that
declares no input at all (a loss-head fragment) takes the bottoms no earlier layer produces as its
inputs; in a net that declares inputs, such a bottom is an error naming ``source:line:column``,
except the label bottom of a loss or accuracy layer (the label fed with each batch).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from torch import Tensor, nn

from marginface.caffe.layer_types import (
    DATA_LAYER_TYPES,
    LAYER_TYPES,
    V1_TYPES,
    CaffeLayer,
    DataLayerInfo,
)
from marginface.caffe.layer_types.fields import warn_unknown_fields, warn_unknown_net_fields
from marginface.caffe.netspec import (
    LayerInfo,
    included,
    layer_info,
    net_input_shapes,
    read_source,
)
from marginface.caffe.prototxt import Message

__all__ = ["CaffeNet", "LayerInfo", "load_net"]

PHASES = ("TRAIN", "TEST")
# Layers whose second (and later) bottoms are per-sample labels, for shape inference.
LABEL_CONSUMERS = ("SoftmaxWithLoss", "FocalLoss", "Accuracy", "LabelSpecificAdd", "CosinAddm",
                   "CombinedMargin", "MarginInnerProduct")
Shape = tuple[int, ...]


class CaffeNet(nn.Module):
    """A Caffe net as a module: ``net(**inputs) -> dict[str, Tensor]`` of blobs by name."""

    def __init__(self, name: str, phase: str, infos: list[LayerInfo],
                 modules: list[CaffeLayer], inputs: list[str],
                 data_layers: list[DataLayerInfo]) -> None:
        super().__init__()
        self.name = name
        self.phase = phase
        self.infos = infos
        self.layers = nn.ModuleList(modules)
        self.input_names = inputs
        self.data_layers = data_layers
        self.blob_shapes: dict[str, Shape] = {}
        self._index = {info.name: i for i, info in enumerate(infos)}

    @property
    def layer_names(self) -> list[str]:
        return [info.name for info in self.infos]

    def layer(self, name: str) -> CaffeLayer:
        if name not in self._index:
            raise KeyError(f"net {self.name!r} has no layer {name!r}")
        return self.layers[self._index[name]]  # type: ignore[return-value]

    def info(self, name: str) -> LayerInfo:
        return self.infos[self._index[name]]

    @property
    def output_names(self) -> list[str]:
        """Blobs that no later layer consumes (Caffe's net outputs)."""
        consumed: set[str] = set()
        outputs: list[str] = []
        for info in reversed(self.infos):
            for top in info.tops:
                if top not in consumed and top not in outputs:
                    outputs.append(top)
            consumed.update(info.bottoms)
        return list(reversed(outputs))

    @property
    def ready(self) -> bool:
        """Whether every layer has its parameters (else some wait for the first call)."""
        return all(m.ready for m in self.layers)  # type: ignore[attr-defined]

    def _setup_layer(self, i: int, shapes: Sequence[Shape], like: Tensor | None = None) -> None:
        module: CaffeLayer = self.layers[i]  # type: ignore[assignment]
        module.ensure_ready(shapes)
        if like is not None and like.is_floating_point():
            module.to(device=like.device, dtype=like.dtype)
        info = self.infos[i]
        blobs = module.caffe_blobs()
        if len(info.lr_mult) > len(blobs):
            raise ValueError(f"layer {info.name!r} ({info.type}): {len(info.lr_mult)} param "
                             f"specs for {len(blobs)} blobs")
        for blob, lr in zip(blobs, info.lr_mult, strict=False):
            if isinstance(blob, nn.Parameter) and lr == 0.0:
                blob.requires_grad_(False)  # lr_mult 0 freezes the blob, as in Caffe

    def infer_shapes(self, shapes: Mapping[str, Sequence[int]]) -> dict[str, Shape]:
        """Propagate input shapes through the net, creating parameters where they become known.

        Returns the shape of every blob that could be inferred (missing inputs stay unknown).
        """
        known: dict[str, Shape] = {k: tuple(int(d) for d in v) for k, v in shapes.items()}
        for data in self.data_layers:  # a data layer's label top is (N,) once data is known
            if len(data.tops) == 2 and data.tops[0] in known and data.tops[1] not in known:
                known[data.tops[1]] = (known[data.tops[0]][0],)
        inputs = set(self.input_names)
        for i, info in enumerate(self.infos):
            if info.type in LABEL_CONSUMERS and info.bottoms and info.bottoms[0] in known:
                for b in info.bottoms[1:]:
                    if b not in known and b in inputs:  # a label input: one per sample
                        known[b] = (known[info.bottoms[0]][0],)
            if not all(b in known for b in info.bottoms):
                continue
            module: CaffeLayer = self.layers[i]  # type: ignore[assignment]
            bottom_shapes = [known[b] for b in info.bottoms]
            tops = module.out_shapes(bottom_shapes)  # first: a window larger than the input
            self._setup_layer(i, bottom_shapes)      # is refused before any weight is sized
            if len(tops) != len(info.tops):
                raise ValueError(f"layer {info.name!r} ({info.type}): {len(info.tops)} tops "
                                 f"named, the layer makes {len(tops)}")
            known.update(zip(info.tops, tops, strict=True))
        self.blob_shapes.update(known)
        return known

    def forward(self, **inputs: Tensor) -> dict[str, Tensor]:
        unknown = sorted(set(inputs) - set(self.input_names))
        if unknown:
            raise ValueError(f"net {self.name!r}: unknown input(s) {unknown}; its inputs are "
                             f"{self.input_names}")
        blobs: dict[str, Tensor] = dict(inputs)
        for i, info in enumerate(self.infos):
            missing = [b for b in info.bottoms if b not in blobs]
            if missing:
                raise ValueError(f"layer {info.name!r} ({info.type}): bottom blob "
                                 f"{missing[0]!r} was not given; pass it as "
                                 f"net({missing[0]}=tensor)")
            bottoms = [blobs[b] for b in info.bottoms]
            if info.propagate_down:
                bottoms = [b if down else b.detach()
                           for b, down in zip(bottoms, info.propagate_down, strict=True)]
            module: CaffeLayer = self.layers[i]  # type: ignore[assignment]
            if not module.ready:
                self._setup_layer(i, [tuple(b.shape) for b in bottoms], bottoms[0])
            tops = module(*bottoms)
            if len(tops) != len(info.tops):
                raise ValueError(f"layer {info.name!r} ({info.type}): {len(info.tops)} tops "
                                 f"named, the layer made {len(tops)}")
            blobs.update(zip(info.tops, tops, strict=True))
        return blobs

    def loss(self, blobs: Mapping[str, Tensor]) -> Tensor:
        """Caffe's objective: the sum of every loss top times its loss_weight."""
        total: Tensor | None = None
        for info in self.infos:
            for top, weight in zip(info.tops, info.loss_weight, strict=True):
                if weight != 0.0:
                    term = weight * blobs[top].sum()
                    total = term if total is None else total + term
        if total is None:
            raise ValueError(f"net {self.name!r} has no loss layer in phase {self.phase}")
        return total

    def param_mults(self) -> list[tuple[list[nn.Parameter], float, float]]:
        """``(params, lr_mult, decay_mult)`` per multiplier pair (Caffe's ParamSpec).

        Blobs without a ``param`` spec get (1, 1); lr_mult 0 blobs are frozen and left out;
        buffers (BatchNorm statistics) are never included.
        """
        if not self.ready:
            pending = [info.name for info, m in zip(self.infos, self.layers, strict=True)
                       if not m.ready]  # type: ignore[attr-defined]
            raise ValueError(f"net {self.name!r}: layers {pending[:5]} have no parameters yet; "
                             "give input_shapes to load_net or run one forward first")
        groups: dict[tuple[float, float], list[nn.Parameter]] = {}
        for info, module in zip(self.infos, self.layers, strict=True):
            for j, blob in enumerate(module.caffe_blobs()):  # type: ignore[operator]
                if not isinstance(blob, nn.Parameter):
                    continue
                lr = info.lr_mult[j] if j < len(info.lr_mult) else 1.0
                decay = info.decay_mult[j] if j < len(info.decay_mult) else 1.0
                if lr != 0.0:
                    groups.setdefault((lr, decay), []).append(blob)
        return [(params, lr, decay) for (lr, decay), params in groups.items()]

    def param_groups(self, base_lr: float, weight_decay: float = 0.0) -> list[dict]:
        """Optimizer parameter groups from each blob's ``param { lr_mult decay_mult }``.

        One group per (lr_mult, decay_mult) pair with ``lr = base_lr * lr_mult`` and
        ``weight_decay = weight_decay * decay_mult`` (both multipliers kept in the group for lr
        schedules). Blobs with lr_mult 0 are frozen and left out; buffers are never included.
        """
        return [{"params": params, "lr": base_lr * lr, "weight_decay": weight_decay * decay,
                 "lr_mult": lr, "decay_mult": decay}
                for params, lr, decay in self.param_mults()]


def _with_type(layer: Message, type_name: str) -> Message:
    """A copy of ``layer`` whose ``type`` is ``type_name`` (for V1 enum types)."""
    copy = Message(layer.line, layer.column, layer.source)
    for field_name, values in layer.items():
        for index, value in enumerate(values):
            copy.add(field_name, type_name if field_name == "type" else value,
                     *layer.position(field_name, index))
    return copy


def load_net(source: str | Path | Message, phase: str = "TRAIN", *,
             input_shapes: Mapping[str, Sequence[int]] | None = None,
             level: int | None = None, stages: Iterable[str] | None = None) -> CaffeNet:
    """Build a :class:`CaffeNet` from a prototxt path, prototxt text or parsed message.

    ``phase`` (TRAIN or TEST) selects layers by their include/exclude rules together with the
    net's ``state`` level and stages (overridable by ``level`` / ``stages``). ``input_shapes``
    (blob name -> shape) adds to or replaces the shapes the prototxt declares; parameters of
    layers whose bottom shapes are then known are created now, the rest at the first call.
    """
    phase = str(phase).upper()
    if phase not in PHASES:
        raise ValueError(f"phase must be TRAIN or TEST, got {phase!r}")
    root = read_source(source)
    warn_unknown_net_fields(root)
    state = root.get("state") or Message()
    level = int(state.get("level", 0)) if level is None else int(level)
    stage_set = {str(s) for s in (state.get_all("stage") if stages is None else stages)}
    layers = root.get_all("layer")
    v1 = root.get_all("layers")
    if layers and v1:
        raise ValueError("the net mixes 'layer' and the old 'layers' fields")
    infos: list[LayerInfo] = []
    modules: list[CaffeLayer] = []
    data_layers: list[DataLayerInfo] = []
    inputs = [str(n) for n in root.get_all("input")]
    produced: set[str] = set(inputs)
    shapes = net_input_shapes(root)
    names: set[str] = set()
    kept: list[tuple[Message, str, str, str]] = []  # (layer, type, name, where) in this phase
    for layer in layers or v1:
        type_name = str(layer.get("type", ""))
        if v1:  # V1 enum types; the module sees the current type name
            type_name = V1_TYPES.get(type_name, type_name)
            layer = _with_type(layer, type_name)
        name = str(layer.get("name", f"{type_name}@{layer.line}"))
        where = f"layer {name!r} ({type_name}, line {layer.line})"
        if included(layer, phase, level, stage_set, where):
            warn_unknown_fields(layer, where)
            kept.append((layer, type_name, name, where))
    # a net that declares its inputs (input:, Input/Data layers) gets no implicit ones; a
    # fragment that declares none (a loss head) takes its undefined bottoms as its inputs
    declared = list(inputs) + [str(t) for layer, type_name, _, _ in kept
                               if type_name in DATA_LAYER_TYPES for t in layer.get_all("top")]
    for position, (layer, type_name, name, where) in enumerate(kept):
        if name in names:
            raise ValueError(f"{where}: duplicate layer name {name!r}")
        names.add(name)
        if type_name in DATA_LAYER_TYPES:
            data = DataLayerInfo.from_layer(layer, phase)
            data_layers.append(data)
            for j, top in enumerate(data.tops):
                if top not in inputs:
                    inputs.append(top)
                produced.add(top)
                if j < len(data.shapes):
                    shapes.setdefault(top, data.shapes[j])
                elif len(data.shapes) == 1:
                    shapes.setdefault(top, data.shapes[0])
            continue
        if type_name not in LAYER_TYPES:
            raise ValueError(f"{where}: unknown layer type {type_name!r}; supported: "
                             f"{', '.join(sorted(LAYER_TYPES))}")
        info = layer_info(layer, type_name)
        info.name = name
        later = [b for b in info.bottoms if b not in produced]
        for bottom in later:
            # A bottom no layer produces is a net input; one produced only later is an error.
            at = layer.at("bottom", info.bottoms.index(bottom))
            if any(bottom in [str(t) for t in other[0].get_all("top")]
                   for other in kept[position + 1:]):
                raise ValueError(f"{at}: {where}: bottom blob {bottom!r} is used before the "
                                 "layer that produces it")
            label = info.type in LABEL_CONSUMERS and info.bottoms.index(bottom) > 0
            if declared and not label:  # the net names its inputs: a typo, not an input
                raise ValueError(f"{at}: {where}: bottom blob {bottom!r} is produced by no "
                                 f"earlier layer and is not an input of the net (inputs: "
                                 f"{declared}; blobs so far: {sorted(produced - set(declared))})")
            inputs.append(bottom)
            produced.add(bottom)
        try:
            module = LAYER_TYPES[type_name](layer, phase)
        except ValueError as error:
            raise ValueError(f"{error} (line {layer.line})") from error
        module.caffe_name = name
        infos.append(info)
        modules.append(module)
        produced.update(info.tops)
    net = CaffeNet(str(root.get("name", "net")), phase, infos, modules, inputs, data_layers)
    if input_shapes:
        shapes.update({k: tuple(int(d) for d in v) for k, v in input_shapes.items()})
    bad = sorted(set(shapes) - set(inputs))
    if bad:
        raise ValueError(f"input_shapes names {bad}, which are not inputs of the net "
                         f"(inputs: {inputs})")
    net.infer_shapes(shapes)
    return net
