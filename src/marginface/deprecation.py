"""Names kept at an old import path for one release after they moved.

A module whose names moved sets ``__getattr__ = moved_names(__name__, {"name": "new.module"})``:
an access to ``old.module.name`` imports the new home lazily (no import-time cycle, no import
side effect) and warns with a :class:`DeprecationWarning` naming the new path.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["moved_names"]


def moved_names(module: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) resolving each name of ``homes`` in its new module."""

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(
            f"{module}.{name} moved to {homes[name]}.{name}; the old path goes after the next "
            "release",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(homes[name]), name)

    return __getattr__
