"""The heads by name: the single table the trainer, the config checks and the tests read.

``create_head("arcface", 512, 85742, scale=64.0)`` builds a head from its name;
``list_heads()`` gives the names; ``register_head("myface", MyFace)`` adds a user's head (a
``marginface.heads.Head`` subclass). Adding a head to marginface is one class and one line in
``_BUILTIN`` below (CONTRIBUTING.md, "Adding a head").
"""

from __future__ import annotations

import inspect
from typing import Any

from marginface.heads.adaface import AdaFace
from marginface.heads.base import Head
from marginface.heads.curricular import CurricularFace
from marginface.heads.elastic import (
    ElasticArcFace,
    ElasticArcFacePlus,
    ElasticCosFace,
    ElasticCosFacePlus,
)
from marginface.heads.magface import MagFace
from marginface.heads.margin import AMSoftmax, ArcFace, CombinedMargin, CosFace, NormFace
from marginface.heads.softmax import Softmax
from marginface.heads.sphereface import SphereFace
from marginface.heads.sphereface2 import SphereFace2
from marginface.heads.subcenter import SubCenterArcFace
from marginface.heads.uniface import UniFace

__all__ = ["register_head", "get_head_class", "create_head", "list_heads", "head_options"]

_BUILTIN: dict[str, type[Head]] = {
    "softmax": Softmax,
    "normface": NormFace,
    "cosface": CosFace,
    "amsoftmax": AMSoftmax,
    "arcface": ArcFace,
    "combined": CombinedMargin,
    "sphereface": SphereFace,
    "curricularface": CurricularFace,
    "adaface": AdaFace,
    "magface": MagFace,
    "elasticface_arc": ElasticArcFace,
    "elasticface_cos": ElasticCosFace,
    "elasticface_arc_plus": ElasticArcFacePlus,
    "elasticface_cos_plus": ElasticCosFacePlus,
    "subcenter_arcface": SubCenterArcFace,
    "sphereface2": SphereFace2,
    "uniface": UniFace,
}
_registry: dict[str, type[Head]] = dict(_BUILTIN)


def register_head(name: str, cls: type[Head]) -> type[Head]:
    """Make ``cls`` available as ``name`` (to ``create_head``, the trainer's ``head.name``)."""
    if not isinstance(name, str) or not name.isidentifier() or name != name.lower():
        raise ValueError(f"name must be a lower-case identifier, got {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Head)):
        raise ValueError(f"cls must be a subclass of marginface.heads.Head, got {cls!r}")
    if _registry.get(name, cls) is not cls:
        raise ValueError(f"name {name!r} is already registered to {_registry[name].__name__}")
    _registry[name] = cls
    return cls


def list_heads() -> list[str]:
    """The registered names, built-in first."""
    return list(_registry)


def get_head_class(name: str) -> type[Head]:
    """The class registered as ``name``; a ValueError listing the valid names otherwise."""
    cls = _registry.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"name must be one of {list_heads()}, got {name!r}")
    return cls


def head_options(name: str) -> list[str] | None:
    """The keyword options the head ``name`` takes, or None if it takes any (``**kwargs``)."""
    parameters = inspect.signature(get_head_class(name)).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return [p.name for p in parameters if p.name not in ("embedding_dim", "num_classes")]


def create_head(name: str, embedding_dim: int, num_classes: int, **options: Any) -> Head:
    """``get_head_class(name)(embedding_dim, num_classes, **options)``.

    An option the head does not take is a ValueError naming it and listing the accepted ones.
    """
    accepted = head_options(name)
    unknown = [] if accepted is None else sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"unknown argument(s) for head {name!r}: {unknown} (it takes {accepted})")
    return get_head_class(name)(embedding_dim, num_classes, **options)
