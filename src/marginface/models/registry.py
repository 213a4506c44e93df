"""The model registry: ``create_model(name, ...)`` and ``list_models()``.

The only registry in marginface (CONTRIBUTING.md). Each entry names a builder, its default
embedding size and input size, and the options it accepts with their defaults, so that the
resolved options can be stored in the model's :class:`ModelConfig` and rebuilt later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from marginface.models import iresnet, mobilefacenet, spherenet
from marginface.models.config import ModelConfig, default_preprocessing

__all__ = ["ModelSpec", "list_models", "create_model"]


@dataclass(frozen=True)
class ModelSpec:
    builder: Callable[..., nn.Module]
    embedding_dim: int
    input_size: tuple[int, int]
    options: dict[str, Any] = field(default_factory=dict)
    description: str = ""


_REGISTRY: dict[str, ModelSpec] = {
    "mobilefacenet": ModelSpec(
        mobilefacenet.MobileFaceNet, 128, (112, 112), {"width": 1.0},
        "MobileFaceNet (Chen et al. 2018), the paper's table; ~1.0M params",
    ),
    "mobilefacenet_wide": ModelSpec(
        mobilefacenet.MobileFaceNetWide, 512, (112, 112), {"blocks": (1, 4, 6, 2), "scale": 2},
        "insightface's wider MobileFaceNet ('mbf'); ~2.06M params",
    ),
    **{
        f"iresnet{depth}": ModelSpec(
            iresnet.IResNet, 512, (112, 112),
            {"layers": iresnet.IRESNET_LAYERS[depth], "dropout": 0.0},
            f"ArcFace's improved ResNet-{depth} (Deng et al. 2019)",
        )
        for depth in (18, 34, 50, 100)
    },
    **{
        f"sphere{depth}": ModelSpec(
            spherenet.SphereNet, 512, (112, 96),
            {
                "layers": spherenet.SPHERENET_LAYERS[depth],
                "batch_norm": depth == 36,
                "dropout": 0.4 if depth == 36 else 0.0,
            },
            f"SphereFace residual net {depth} (Liu et al. 2017) as in the shared Caffe nets",
        )
        for depth in (20, 36, 64)
    },
}


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return sorted(_REGISTRY)


def _check_input_size(input_size: Any) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in input_size)
        ok = (height, width) == tuple(input_size)
    except (TypeError, ValueError):
        ok = False
    if not ok or height <= 0 or width <= 0 or height % 16 or width % 16:
        raise ValueError(
            f"input_size must be (height, width), positive multiples of 16 "
            f"(e.g. (112, 112) or (112, 96)), got {input_size!r}"
        )
    return height, width


def create_model(
    name: str,
    *,
    input_size: tuple[int, int] | None = None,
    embedding_dim: int | None = None,
    **options: Any,
) -> nn.Module:
    """Build a registered backbone mapping (N, 3, H, W) faces to (N, D) embeddings.

    ``input_size`` defaults to the family's native size: (112, 112), or (112, 96) for ``sphere*``.
    ``embedding_dim`` defaults to 128 for ``mobilefacenet`` and 512 for the others. Extra keyword
    ``options`` are family-specific (see ``docs/models.md``); unknown ones raise ValueError.
    The model gets a ``config`` attribute (:class:`ModelConfig`).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model name {name!r}; valid names: {', '.join(list_models())}")
    spec = _REGISTRY[name]
    size = _check_input_size(spec.input_size if input_size is None else input_size)
    dim = spec.embedding_dim if embedding_dim is None else embedding_dim
    if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
        raise ValueError(f"embedding_dim must be a positive int, got {dim!r}")
    unknown = set(options) - set(spec.options)
    if unknown:
        raise ValueError(
            f"unknown option(s) {sorted(unknown)} for model {name!r}; "
            f"accepted: {sorted(spec.options) or 'none'}"
        )
    resolved = {**spec.options, **options}
    resolved = {k: list(v) if isinstance(v, tuple) else v for k, v in resolved.items()}
    model = spec.builder(input_size=size, embedding_dim=dim, **resolved)
    model.config = ModelConfig(
        name=name,
        input_size=size,
        embedding_dim=dim,
        options=resolved,
        preprocessing=default_preprocessing(name, size),
    )
    return model
