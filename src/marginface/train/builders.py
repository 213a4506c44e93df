"""From config sections to objects: backbone, head, training data and verification pair sets.

The trainer's only seam to the rest of marginface: backbones come from
``marginface.models.create_model``, heads from the ``marginface.heads`` registry, image folders /
``.rec`` files and pair sets from ``marginface.data``, the synthetic default from
``marginface.train.synthetic``. Every bad value is a ``ValueError`` naming the config key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from marginface.train.config import DataConfig, EvalConfig, HeadConfig, ModelConfig
from marginface.train.synthetic import SyntheticFaces, synthetic_pairs

__all__ = [
    "PairImages",
    "build_model",
    "model_embedding_dim",
    "build_head",
    "build_train_dataset",
    "dataset_labels",
    "check_train_dataset",
    "build_pair_sets",
]

def build_model(config: ModelConfig) -> nn.Module:
    from marginface.models import create_model

    try:
        return create_model(config.name, input_size=tuple(config.input_size),
                            embedding_dim=config.embedding_dim, **config.options)
    except TypeError as error:  # an option the model does not take
        raise ValueError(f"model.options: {error}") from None


@torch.no_grad()
def model_embedding_dim(model: nn.Module, input_size: tuple[int, int]) -> int:
    dim = getattr(getattr(model, "config", None), "embedding_dim", None)
    if isinstance(dim, int):
        return dim
    was_training = model.training
    model.eval()
    out = model(torch.zeros(2, 3, *input_size))
    model.train(was_training)
    return int(out.shape[1])


def build_head(config: HeadConfig, embedding_dim: int, num_classes: int) -> nn.Module:
    from marginface.heads.registry import create_head, head_options

    kwargs: dict[str, Any] = dict(config.options)
    if config.scale is not None:
        kwargs["scale"] = config.scale
    if config.margin is not None:
        kwargs["margin"] = config.margin
    accepted = head_options(config.name)
    for key in kwargs:
        if accepted is not None and key not in accepted:
            where = key if key in ("scale", "margin") else f"options.{key}"
            raise ValueError(
                f"head.{where}: {config.name} does not take {key!r} (it takes {accepted})")
    if "matmul_dtype" in kwargs and isinstance(kwargs["matmul_dtype"], str):
        dtype = getattr(torch, kwargs["matmul_dtype"], None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"head.options.matmul_dtype: not a torch dtype name: "
                             f"{kwargs['matmul_dtype']!r} (e.g. float32, bfloat16)")
        kwargs["matmul_dtype"] = dtype
    return create_head(config.name, embedding_dim, num_classes, **kwargs)


def build_train_dataset(config: DataConfig, input_size: tuple[int, int], seed: int) -> Dataset:
    """The training set: items ``(image, label)``, image uint8 (3, H, W) or preprocessed float.

    ``data.exclude_list`` drops the samples it names (``marginface.train.exclusion``).
    """
    if config.kind == "synthetic":
        s = config.synthetic
        dataset: Dataset = SyntheticFaces(s.num_identities, s.images_per_identity,
                                          image_size=tuple(input_size), seed=s.seed,
                                          split="train")
    else:
        from marginface.train.real_data import build_real_dataset

        dataset = build_real_dataset(config, input_size)
    if config.exclude_list is None:
        return dataset
    from marginface.train.exclusion import ExcludedSamples

    return ExcludedSamples(dataset, config.exclude_list)


def dataset_labels(dataset: Dataset) -> np.ndarray:
    """All labels without decoding images (``labels``/``targets`` attribute), else by iterating."""
    for name in ("labels", "targets"):
        labels = getattr(dataset, name, None)
        if labels is not None:
            return np.asarray(labels, dtype=np.int64)
    return np.array([int(dataset[i][1]) for i in range(len(dataset))], dtype=np.int64)


def check_train_dataset(dataset: Dataset, num_classes: int | None) -> int:
    """Empty dataset, identities without images, labels beyond ``num_classes``: ValueError."""
    if len(dataset) == 0:
        raise ValueError("the training dataset is empty (0 images)")
    labels = dataset_labels(dataset)
    if labels.min() < 0:
        raise ValueError(f"the training dataset has a negative label {int(labels.min())}")
    declared = getattr(dataset, "num_classes", None)
    found = int(labels.max()) + 1
    classes = num_classes if num_classes is not None else (declared or found)
    if found > classes:
        raise ValueError(
            f"label {found - 1} does not fit num_classes={classes} "
            f"(data.num_classes or the dataset's own count)"
        )
    counts = np.bincount(labels, minlength=classes)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        names = getattr(dataset, "classes", None)
        first = names[empty[0]] if names is not None and len(names) > empty[0] else int(empty[0])
        raise ValueError(
            f"{empty.size} of {classes} identities have no images (first: {first!r}); "
            f"num_classes must match the identities present"
        )
    return int(classes)


@dataclass
class PairImages:
    """A verification set in memory: images (2N, 3, H, W) uint8, pair i = rows 2i and 2i+1."""

    name: str
    images: torch.Tensor
    issame: np.ndarray
    skipped: int = 0


def build_pair_sets(config: EvalConfig, data: DataConfig,
                    input_size: tuple[int, int]) -> list[Any]:
    """One object per configured set: :class:`PairImages` or the data package's pair set."""
    sets: list[Any] = []
    for i, item in enumerate(config.sets):
        if item.kind == "synthetic":
            s = data.synthetic
            images, issame = synthetic_pairs(s.pair_identities, s.num_pairs,
                                             image_size=tuple(input_size), seed=s.seed)
            sets.append(PairImages(item.name, images, issame))
        else:
            from marginface.train.real_data import build_real_pair_set

            sets.append(build_real_pair_set(item, input_size, where=f"eval.sets[{i}]",
                                            n_folds=config.n_folds))
    names = [getattr(s, "name", None) for s in sets]
    if len(set(names)) != len(names):
        raise ValueError(f"eval.sets: names must be unique, got {names}")
    return sets
