"""Caffe ``Pooling`` (MAX, AVE; global_pooling) with Caffe's output-size rounding.

Caffe rounds the output size up: ``out = ceil((H + 2p - k) / s) + 1``, then, when ``p > 0``,
drops the last window if it would start in the padding (``(out - 1)·s >= H + p``). MAX ignores
padded positions. AVE sums the window and divides by the window size clipped to ``H + p``
(padding counted, the overhang past the right padding not), as Caffe's CPU code does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from marginface.caffe.layer_types.base import CaffeLayer, Shape, hw_pair, sub
from marginface.caffe.prototxt import Message

__all__ = ["Pooling", "caffe_pool_size"]


def caffe_pool_size(size: int, kernel: int, pad: int, stride: int, ceil: bool = True) -> int:
    """Caffe's pooled size: ceil rounding (``round_mode: FLOOR`` rounds down), clipped so the
    last window starts inside input+pad."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if pad > 0 and (out - 1) * stride >= size + pad:
        out -= 1
    return out


class Pooling(CaffeLayer):
    """Caffe ``Pooling``: pool MAX (default, or 0) / AVE (or 1); STOCHASTIC is not supported."""

    def __init__(self, layer: Message, phase: str) -> None:
        super().__init__(str(layer.get("name")), str(layer.get("type")))
        p = sub(layer, "pooling_param")
        pool = str(p.get("pool", "MAX")).upper()
        self.method = {"0": "MAX", "1": "AVE"}.get(pool, pool)
        if self.method not in ("MAX", "AVE"):
            raise ValueError(f"{self.where}: pool {pool} is not supported (MAX or AVE)")
        self.global_pooling = bool(p.get("global_pooling", False))
        round_mode = str(p.get("round_mode", "CEIL")).upper()
        if round_mode not in ("CEIL", "FLOOR", "0", "1"):
            raise ValueError(f"{self.where}: round_mode {round_mode} (CEIL or FLOOR)")
        self.ceil = round_mode in ("CEIL", "0")
        self.pad = hw_pair(p, "pad", 0, self.where)
        self.stride = hw_pair(p, "stride", 1, self.where)
        if self.global_pooling:
            if p.has("kernel_size") or p.has("kernel_h"):
                raise ValueError(f"{self.where}: global_pooling takes no kernel size")
            if self.pad != (0, 0) or self.stride != (1, 1):
                raise ValueError(f"{self.where}: global_pooling needs pad 0 and stride 1")
            self.kernel: tuple[int, int] | None = None
        else:
            self.kernel = hw_pair(p, "kernel_size", None, self.where)
        if any(pp >= k for pp, k in zip(self.pad, self.kernel or (1, 1), strict=True)) and (
                not self.global_pooling):
            raise ValueError(f"{self.where}: pad {self.pad} must be smaller than kernel "
                             f"{self.kernel}")

    def _geometry(self, h: int, w: int) -> tuple[tuple[int, int], tuple[int, int]]:
        kernel = (h, w) if self.kernel is None else self.kernel
        out = tuple(caffe_pool_size(size, k, p, s, self.ceil) for size, k, p, s in
                    zip((h, w), kernel, self.pad, self.stride, strict=True))
        return kernel, out  # type: ignore[return-value]

    def out_shapes(self, shapes: Sequence[Shape]) -> list[Shape]:
        if len(shapes[0]) != 4:
            raise ValueError(f"{self.where}: expects a 4-D bottom, got shape {shapes[0]}")
        n, c, h, w = shapes[0]
        _, out = self._geometry(h, w)
        if min(out) <= 0:
            raise ValueError(f"{self.where}: input {h}x{w} too small for kernel {self.kernel}")
        return [(n, c, *out)]

    def forward(self, x: Tensor) -> tuple[Tensor]:
        h, w = x.shape[-2:]
        kernel, out = self._geometry(h, w)
        (ph, pw), (sh, sw) = self.pad, self.stride
        # Pad left/top by p and right/bottom so that floor-mode pooling yields Caffe's size.
        right = [max(0, (o - 1) * s + k - size - p) for o, s, k, size, p in
                 zip(out, (sh, sw), kernel, (h, w), (ph, pw), strict=True)]
        if self.method == "MAX":
            padded = F.pad(x, (pw, right[1], ph, right[0]), value=float("-inf"))
            return (F.max_pool2d(padded, kernel, (sh, sw)),)
        padded = F.pad(x, (pw, right[1], ph, right[0]), value=0.0)
        sums = F.avg_pool2d(padded, kernel, (sh, sw), divisor_override=1)
        counts = []
        for o, s, k, size, p in zip(out, (sh, sw), kernel, (h, w), (ph, pw), strict=True):
            start = torch.arange(o, dtype=x.dtype, device=x.device) * s - p
            end = torch.clamp(start + k, max=size + p)
            counts.append(end - start)
        return (sums / (counts[0][:, None] * counts[1][None, :]),)
