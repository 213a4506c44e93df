"""From a parsed prototxt to layer specifications: phase rules, wiring, param specs, inputs.

Caffe's NetStateRule (include/exclude by phase, level and stages), each layer's ``param``
(lr_mult, decay_mult; V1 ``blobs_lr``/``weight_decay``), ``loss_weight`` (1 for the first top of
a ``*Loss`` layer by default), ``propagate_down``, and the net-level ``input``/``input_dim``/
``input_shape`` fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from marginface.caffe.layer_types.base import float_values, int_values
from marginface.caffe.prototxt import Message, parse_prototxt, read_prototxt

__all__ = ["LayerInfo", "included", "layer_info", "net_input_shapes", "read_source",
           "rule_matches"]

Shape = tuple[int, ...]


@dataclass
class LayerInfo:
    """One built layer's wiring, as the prototxt gave it."""

    name: str
    type: str
    bottoms: list[str]
    tops: list[str]
    lr_mult: list[float] = field(default_factory=list)
    decay_mult: list[float] = field(default_factory=list)
    loss_weight: list[float] = field(default_factory=list)
    propagate_down: list[bool] = field(default_factory=list)
    line: int = 0


def rule_matches(rule: Message, phase: str, level: int, stages: set[str]) -> bool:
    """Caffe's NetStateRule: every condition that is set must hold."""
    if rule.has("phase") and str(rule.get("phase")) != phase:
        return False
    if rule.has("min_level") and level < int(rule.get("min_level")):
        return False
    if rule.has("max_level") and level > int(rule.get("max_level")):
        return False
    if any(str(s) not in stages for s in rule.get_all("stage")):
        return False
    return not any(str(s) in stages for s in rule.get_all("not_stage"))


def included(layer: Message, phase: str, level: int, stages: set[str], where: str) -> bool:
    include, exclude = layer.get_all("include"), layer.get_all("exclude")
    if include and exclude:
        raise ValueError(f"{where}: give include or exclude rules, not both")
    if include:
        return any(rule_matches(r, phase, level, stages) for r in include)
    return not any(rule_matches(r, phase, level, stages) for r in exclude)


def layer_info(layer: Message, type_name: str) -> LayerInfo:
    name = str(layer.get("name", ""))
    info = LayerInfo(name=name, type=type_name,
                     bottoms=[str(b) for b in layer.get_all("bottom")],
                     tops=[str(t) for t in layer.get_all("top")], line=layer.line)
    specs = layer.get_all("param")
    where = f"layer {name!r} ({type_name})"
    if specs and all(isinstance(s, Message) for s in specs):
        # Caffe's multipliers are finite and >= 0 (a NaN would train silently to NaN)
        info.lr_mult = [float_values(s, "lr_mult", where, default=1.0, minimum=0.0)[-1]
                        for s in specs]
        info.decay_mult = [float_values(s, "decay_mult", where, default=1.0, minimum=0.0)[-1]
                           for s in specs]
        if any(s.has("name") for s in specs):
            raise ValueError(f"layer {name!r} (line {layer.line}): shared parameters "
                             "(param {{ name }}) are not supported")
    elif layer.has("blobs_lr"):  # V1 layout
        info.lr_mult = float_values(layer, "blobs_lr", where, minimum=0.0)
        info.decay_mult = float_values(layer, "weight_decay", where, minimum=0.0)
        info.decay_mult += [1.0] * (len(info.lr_mult) - len(info.decay_mult))
    weights = float_values(layer, "loss_weight", where)
    if not weights and type_name.endswith("Loss") and info.tops:
        weights = [1.0]  # Caffe's loss layers weigh their first top 1 by default
    info.loss_weight = weights + [0.0] * (len(info.tops) - len(weights))
    info.propagate_down = [bool(p) for p in layer.get_all("propagate_down")]
    if info.propagate_down and len(info.propagate_down) != len(info.bottoms):
        raise ValueError(f"layer {name!r} (line {layer.line}): {len(info.propagate_down)} "
                         f"propagate_down values for {len(info.bottoms)} bottoms")
    return info


def net_input_shapes(root: Message) -> dict[str, Shape]:
    """Shapes from the net-level ``input`` + ``input_dim`` / ``input_shape`` fields."""
    names = [str(n) for n in root.get_all("input")]
    shapes: dict[str, Shape] = {}
    dims = int_values(root, "input_dim", "net input")
    given = root.get_all("input_shape")
    if dims:
        if len(dims) != 4 * len(names):
            raise ValueError(f"{len(dims)} input_dim values for {len(names)} inputs "
                             "(4 per input expected)")
        for i, name in enumerate(names):
            shapes[name] = tuple(dims[4 * i:4 * i + 4])
    elif given:
        if len(given) != len(names):
            raise ValueError(f"{len(given)} input_shape messages for {len(names)} inputs")
        for name, s in zip(names, given, strict=True):
            shapes[name] = tuple(int_values(s, "dim", f"input_shape of {name!r}"))
    return shapes


def read_source(source: str | Path | Message) -> Message:
    if isinstance(source, Message):
        return source
    if isinstance(source, Path):
        return read_prototxt(source)
    text = str(source)
    if "\n" not in text and "{" not in text and ":" not in text.split("/")[-1]:
        return read_prototxt(text)  # a path (FileNotFoundError if missing)
    if "\n" not in text and Path(text).is_file():
        return read_prototxt(text)
    return parse_prototxt(text)
