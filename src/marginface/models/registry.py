"""The model registry: ``create_model(name, ...)`` and ``list_models()``.

The only registry in marginface (CONTRIBUTING.md). Each entry (:class:`ModelSpec`, as timm's
default configs) names a builder, its default embedding size and input size, the options it
accepts with their defaults, and its default pixel preprocessing, so that the resolved options
and preprocessing can be stored in the model's :class:`ModelConfig` and rebuilt later.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from marginface.models import iresnet, mobilefacenet, spherenet
from marginface.models.config import ModelConfig
from marginface.preprocessing import Preprocessing
from marginface.templates import template_for_size

__all__ = ["ModelSpec", "create_model", "default_preprocessing", "list_models"]

# SphereFace's Caffe nets and the mobilefacenet-casia checkpoint: (x - 127.5) / 128
# (Caffe mean_value 127.5, scale 0.0078125).
CAFFE_SCALING = Preprocessing(mean=127.5, std=128.0)
# insightface's (x / 255 - 0.5) / 0.5 in pixel units.
INSIGHTFACE_SCALING = Preprocessing(mean=127.5, std=127.5)

__all__ = ["ModelSpec", "list_models", "create_model"]


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: builder, default sizes and options, default preprocessing.

    ``preprocessing``'s ``alignment_template`` is the one for the default ``input_size``; another
    input size takes its template from :func:`marginface.templates.template_for_size`.
    """

    builder: Callable[..., nn.Module]
    embedding_dim: int
    input_size: tuple[int, int]
    options: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    preprocessing: Preprocessing = INSIGHTFACE_SCALING

    def __post_init__(self) -> None:
        template = template_for_size(self.input_size)
        object.__setattr__(
            self,
            "preprocessing",
            dataclasses.replace(self.preprocessing, alignment_template=template),
        )


_REGISTRY: dict[str, ModelSpec] = {
    "mobilefacenet": ModelSpec(
        mobilefacenet.MobileFaceNet, 128, (112, 112), {"width": 1.0},
        "MobileFaceNet (Chen et al. 2018), the paper's table; ~1.0M params",
        preprocessing=CAFFE_SCALING,
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
            preprocessing=CAFFE_SCALING,
        )
        for depth in (20, 36, 64)
    },
}


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return sorted(_REGISTRY)


def default_preprocessing(name: str, input_size: tuple[int, int]) -> Preprocessing:
    """Model ``name``'s default preprocessing (its spec's) with the template of ``input_size``
    (112x96 -> SphereFace, 112x112 -> ArcFace, other sizes None)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model name {name!r}; valid names: {', '.join(list_models())}")
    return dataclasses.replace(
        _REGISTRY[name].preprocessing, alignment_template=template_for_size(input_size)
    )


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
