"""Old import path of ``marginface.heads.fused.gradient_cache`` (kept for users' imports)."""

from marginface.heads.fused.gradient_cache import (
    MIN_CACHED_BYTES,
    release_gradient_memory,
    reusable_gradient,
)

__all__ = ["MIN_CACHED_BYTES", "reusable_gradient", "release_gradient_memory"]
