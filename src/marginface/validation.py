"""Argument checks shared by heads, the fused loss and the trainer.

Every check raises ``ValueError`` naming the argument and the offending value or index, before any
computation, so that nothing is clipped or dropped silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "check_positive",
    "check_positive_int",
    "check_non_negative",
    "check_in_range",
    "check_choice",
    "check_margins",
    "check_sphereface_m",
    "check_sphereface",
    "check_embeddings",
    "check_labels",
    "Interval",
]


def check_positive(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_margins(m1: float, m2: float, m3: float) -> tuple[float, float, float]:
    """Validate a combined-margin triple: m1 > 0, 0 <= m2 < pi (radians), m3 >= 0."""
    check_positive("m1", m1)
    if not (isinstance(m2, (int, float)) and math.isfinite(m2) and 0.0 <= m2 < math.pi):
        raise ValueError(f"m2 must be an angle in radians in [0, pi), got {m2!r}")
    if not (isinstance(m3, (int, float)) and math.isfinite(m3) and m3 >= 0.0):
        raise ValueError(f"m3 must be a finite number >= 0, got {m3!r}")
    return float(m1), float(m2), float(m3)


def check_embeddings(embeddings: Tensor, embedding_dim: int, name: str = "embeddings") -> None:
    """Embeddings must be a finite floating (batch, embedding_dim) tensor."""
    if not isinstance(embeddings, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(embeddings).__name__}")
    if embeddings.dim() != 2 or embeddings.shape[1] != embedding_dim:
        raise ValueError(
            f"{name} must have shape (batch, {embedding_dim}), got {tuple(embeddings.shape)}"
        )
    if not embeddings.is_floating_point():
        raise ValueError(f"{name} must be floating point, got dtype {embeddings.dtype}")
    finite = torch.isfinite(embeddings)
    if not bool(finite.all()):
        row = int((~finite).any(dim=1).nonzero()[0, 0])
        raise ValueError(f"{name} contains NaN or inf (first at row {row})")


def check_labels(labels: Tensor, num_classes: int, batch_size: int | None = None) -> None:
    """Labels must be an integer vector with every value in [0, num_classes)."""
    if not isinstance(labels, Tensor):
        raise ValueError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    if labels.dim() != 1:
        raise ValueError(f"labels must be 1-D (batch,), got shape {tuple(labels.shape)}")
    if batch_size is not None and labels.shape[0] != batch_size:
        raise ValueError(
            f"labels has {labels.shape[0]} entries but embeddings has {batch_size} rows"
        )
    bad = (labels < 0) | (labels >= num_classes)
    if bool(bad.any()):
        index = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"labels[{index}] = {int(labels[index])} is outside [0, num_classes={num_classes})"
        )


def check_positive_int(name: str, value: int) -> int:
    """A Python integer >= 1 (bool is refused: ``True`` is not a size)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_sphereface_m(m: int) -> int:
    """SphereFace's integer angular margin: 1, 2, 3 or 4 (cos(m theta) as a polynomial)."""
    if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= 4:
        raise ValueError(f"m must be an integer in 1..4, got {m!r}")
    return m


def check_sphereface(m: int, lambda_: float) -> None:
    """SphereFace's margin ``m`` and its annealing weight ``lambda_`` (finite, >= 0)."""
    check_sphereface_m(m)
    check_non_negative("lambda_", lambda_)


def check_non_negative(name: str, value: float) -> float:
    if isinstance(value, bool) or not (
        isinstance(value, (int, float)) and math.isfinite(value) and value >= 0
    ):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_in_range(name: str, value: float, low: float, high: float, what: str = "") -> float:
    """A finite real number in ``[low, high]`` (a momentum, a start cosine, an angle)."""
    if isinstance(value, bool) or not (
        isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high
    ):
        raise ValueError(f"{name} must be {what or 'a number'} in [{low}, {high}], got {value!r}")
    return float(value)


def check_choice(name: str, value: object, choices) -> object:
    """``value`` if it is one of ``choices`` (a head's variant name, a mode)."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


@dataclass(frozen=True)
class Interval:
    """A valid range a head declares for an option (``CosFace.margin_range``): one source for the
    constructor's check, the config's check and the docs. ``text`` is how it reads, e.g.
    ``[0, pi/2)``; ``why`` says what goes wrong outside it."""

    low: float
    high: float
    text: str
    what: str = "a number"
    high_open: bool = False
    why: str = ""

    def contains(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if not math.isfinite(value) or value < self.low:
            return False
        return value < self.high if self.high_open else value <= self.high

    def check(self, name: str, value: float) -> float:
        """``float(value)``, or a ValueError naming ``name``, the range and the reason."""
        if not self.contains(value):
            why = f" ({self.why})" if self.why else ""
            raise ValueError(f"{name} must be {self.what} in {self.text}, got {value!r}{why}")
        return float(value)
