"""Typed dataclasses from plain mappings: every key and value checked against the annotations.

The one config checker of marginface: the training config (parsed YAML,
:mod:`marginface.train.config`) and Caffe's solver settings (:mod:`marginface.caffe.solver`) both
go through it. ``from_mapping(cls, raw)`` builds dataclass ``cls`` from ``raw``; an unknown key or
a value of the wrong type is a ``ValueError`` naming its dotted path (``optimizer.lr``,
``eval.sets[0].kind``). Supports bool/int/float/str, Optional/unions, Literal, list/tuple,
dict and nested dataclasses.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal

__all__ = ["from_mapping"]


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, path: str, numeric_strings: bool) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert it (lists to tuples etc.)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in args:
            if option is type(None):
                continue
            try:
                return _convert(value, option, path, numeric_strings)
            except ValueError as error:
                errors.append(str(error))
        raise ValueError(errors[0] if len(errors) == 1 else
                         f"{path}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{path}: expected one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ValueError(f"{path}: expected a mapping, got {value!r}")
        return from_mapping(tp, value, path, numeric_strings=numeric_strings)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise ValueError(f"{path}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ValueError(f"{path}: expected {len(args)} items, got {len(value)}")
            pairs = enumerate(zip(value, args, strict=True))
            return tuple(_convert(v, a, f"{path}[{i}]", numeric_strings) for i, (v, a) in pairs)
        item = args[0] if args else Any
        items = [_convert(v, item, f"{path}[{i}]", numeric_strings) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"{path}: expected a mapping, got {value!r}")
        return {str(k): v for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{path}: expected a bool, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{path}: expected an int, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and numeric_strings:
            # PyYAML (YAML 1.1) reads exponent forms without a dot, e.g. 1e-3, as strings.
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{path}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config annotation {tp!r} at {path}")  # programming error


def from_mapping(cls: type, raw: Mapping[str, Any], path: str = "", *,
                 numeric_strings: bool = True) -> Any:
    """Build dataclass ``cls`` from ``raw``, checking every key and value; ``path`` prefixes names.

    ``numeric_strings``: accept a float written as a string (``"1e-3"``, which YAML 1.1 reads as
    a string); formats with real number literals (Caffe's prototxt) turn it off.
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in names:
            where = f"{path}.{key}" if path else str(key)
            raise ValueError(f"unknown config key {where!r} (valid keys: {sorted(names)})")
    kwargs = {}
    for key, value in raw.items():
        kwargs[key] = _convert(value, hints[key], f"{path}.{key}" if path else key,
                               numeric_strings)
    return cls(**kwargs)
