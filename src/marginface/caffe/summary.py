"""A table of a Caffe net: layers, top blob shapes and parameter counts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from marginface.caffe.net import CaffeNet, load_net

__all__ = ["LayerRow", "NetSummary", "summarize_net", "parse_input_shape"]


@dataclass
class LayerRow:
    name: str
    type: str
    bottoms: list[str]
    tops: list[str]
    top_shapes: list[tuple[int, ...] | None]
    params: int  # learnable values (nn.Parameters, frozen ones included)
    blob_values: int  # every value the layer stores in a .caffemodel (BatchNorm stats too)


@dataclass
class NetSummary:
    name: str
    phase: str
    inputs: dict[str, tuple[int, ...] | None]
    rows: list[LayerRow]

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def total_blob_values(self) -> int:
        return sum(r.blob_values for r in self.rows)

    def params_of(self, layer_names: Sequence[str]) -> int:
        wanted = set(layer_names)
        return sum(r.params for r in self.rows if r.name in wanted)

    def to_text(self) -> str:
        def fmt(shape: tuple[int, ...] | None) -> str:
            return "?" if shape is None else "x".join(str(d) for d in shape) or "scalar"

        lines = [f"net {self.name!r}, phase {self.phase}"]
        for name, shape in self.inputs.items():
            lines.append(f"  input {name}: {fmt(shape)}")
        width = max([len(r.name) for r in self.rows] + [5])
        twidth = max([len(r.type) for r in self.rows] + [4])
        lines.append(f"{'layer':<{width}}  {'type':<{twidth}}  {'params':>10}  tops")
        for r in self.rows:
            tops = ", ".join(f"{t} {fmt(s)}" for t, s in zip(r.tops, r.top_shapes, strict=True))
            lines.append(f"{r.name:<{width}}  {r.type:<{twidth}}  {r.params:>10,}  {tops}")
        lines.append(f"total learnable parameters: {self.total_params:,} "
                     f"({self.total_params / 1e6:.3f} M); values in .caffemodel blobs: "
                     f"{self.total_blob_values:,}")
        if any(s is None for r in self.rows for s in r.top_shapes):
            lines.append("('?': shape unknown; give --input-shape, e.g. data=1,3,112,96)")
        return "\n".join(lines)


def parse_input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """``"data=1,3,112,96"`` -> ``("data", (1, 3, 112, 96))``."""
    name, sep, dims = text.partition("=")
    try:
        shape = tuple(int(d) for d in dims.split(","))
    except ValueError:
        shape = ()
    if not sep or not name or not shape or any(d <= 0 for d in shape):
        raise ValueError(f"input shape {text!r} must look like NAME=D1,D2,... (positive ints)")
    return name, shape


def summarize_net(net: CaffeNet | str | Path, phase: str = "TRAIN",
                  input_shapes: Mapping[str, Sequence[int]] | None = None) -> NetSummary:
    """Summarise a built net or a prototxt; shapes come from inference, nothing is run."""
    if not isinstance(net, CaffeNet):
        net = load_net(net, phase, input_shapes=input_shapes)
    elif input_shapes:
        net.infer_shapes(dict(input_shapes))
    shapes = net.blob_shapes
    rows = []
    for info, module in zip(net.infos, net.layers, strict=True):
        blobs = module.caffe_blobs() if module.ready else []  # type: ignore[operator]
        rows.append(LayerRow(
            name=info.name, type=info.type, bottoms=info.bottoms, tops=info.tops,
            top_shapes=[shapes.get(t) for t in info.tops],
            params=sum(b.numel() for b in blobs if isinstance(b, nn.Parameter)),
            blob_values=sum(b.numel() for b in blobs)))
    inputs = {name: shapes.get(name) for name in net.input_names}
    return NetSummary(net.name, net.phase, inputs, rows)
