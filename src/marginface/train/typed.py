"""Moved to :mod:`marginface.typed` (the one config checker); kept importable for one release."""

from marginface.typed import from_mapping

__all__ = ["from_mapping"]
