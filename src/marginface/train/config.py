"""Training configuration: typed dataclasses loaded from YAML.

Every key is checked against the dataclass fields: an unknown key or a value of the wrong type is a
``ValueError`` naming its dotted path (``optimizer.lr``). ``--set key.sub=value`` overrides are
parsed as YAML scalars (``1e-3`` is a float, ``true`` a bool, ``[1, 2]`` a list) and applied to
the raw mapping before validation, so they obey the same checks.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from marginface.atomic import atomic_write_text
from marginface.errors import ConfigError
from marginface.inputs import read_text
from marginface.typed import from_mapping
from marginface.yamlfile import load_yaml

__all__ = [
    "ModelConfig",
    "HeadConfig",
    "SyntheticConfig",
    "AugmentConfig",
    "DataConfig",
    "OptimizerConfig",
    "ScheduleConfig",
    "EvalSetConfig",
    "EvalConfig",
    "TrainConfig",
    "Config",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "save_config",
    "apply_overrides",
]


@dataclass
class ModelConfig:
    name: str = "mobilefacenet"
    input_size: tuple[int, int] = (112, 112)
    embedding_dim: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None  # a marginface model file: its weights start the backbone


@dataclass
class HeadConfig:
    """A head of ``marginface.heads``; ``options`` are extra constructor keywords (m1, m2, ...).

    ``name`` is a name of the heads registry (``marginface.heads.list_heads()``).
    """

    name: str = "cosface"
    scale: float | None = None
    margin: float | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from marginface.heads.registry import list_heads

        if self.name not in list_heads():
            raise ValueError(f"head.name: expected one of {list_heads()}, got {self.name!r}")


@dataclass
class SyntheticConfig:
    """The embedded default: rendered face-like identities (see ``marginface.train.synthetic``)."""

    num_identities: int = 64
    images_per_identity: int = 24
    pair_identities: int = 40
    num_pairs: int = 400
    seed: int = 1234


@dataclass
class AugmentConfig:
    """Face augmentations of the aligned crop (``marginface.train.augment``); 0 switches one off.

    ``scale``: zoom by a factor in [1 - scale, 1 + scale]; ``translate``: shift by up to this
    fraction of the width/height; ``brightness``/``contrast``/``saturation``: factors in
    [1 - v, 1 + v]; ``greyscale``: probability of a grey image.
    """

    scale: float = 0.0
    translate: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    greyscale: float = 0.0


@dataclass
class DataConfig:
    kind: Literal["synthetic", "folder", "rec", "lfw"] = "synthetic"
    path: str | None = None
    identities: list[str] | None = None  # folder: train only on these identity folders
    exclude_identities: list[str] = field(default_factory=list)  # folder: held out
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    num_classes: int | None = None  # checked against the dataset when given
    flip: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    min_images_per_identity: int = 1  # folder, rec, lfw: identities with fewer are left out
    skip_unreadable: bool = False
    num_workers: int = 0
    people_file: str | None = None  # LFW protocol: people.txt restricting the training identities
    exclude_fold: int | None = None  # LFW protocol: the fold whose people are held out (1..10)
    exclude_list: str | None = None  # text file of sample keys to leave out (subcenter-clean)
    validation_folds: list[int] = field(default_factory=list)  # LFW: more folds held out


@dataclass
class OptimizerConfig:
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 5e-4
    decay_norm_and_bias: bool = False  # weight decay on BN/PReLU/bias too (off by default)
    head_weight_decay: float | None = None  # None: same as weight_decay


@dataclass
class ScheduleConfig:
    name: Literal["poly", "cosine", "multistep", "constant"] = "poly"
    warmup_steps: int = 0
    warmup_start_factor: float = 0.0
    power: float = 1.0
    min_lr: float = 0.0
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1


@dataclass
class EvalSetConfig:
    """A verification set: the synthetic pairs, an LFW folder, a ``.bin`` or a pairs list."""

    name: str = "synthetic"
    kind: Literal["synthetic", "lfw", "bin", "pairs", "folder"] = "synthetic"
    path: str | None = None
    folds: list[int] | None = None  # LFW protocol: evaluate only these folds' pairs (1..10)
    identities: list[str] | None = None  # folder: pairs drawn from these identity folders
    num_pairs: int = 600  # folder: number of pairs (half same, half different)
    skip_bad_images: bool = False


@dataclass
class EvalConfig:
    interval: int = 0  # steps between evaluations; 0: only at the end
    sets: list[EvalSetConfig] = field(default_factory=lambda: [EvalSetConfig()])
    batch_size: int = 128
    flip: bool = True
    n_folds: int = 10
    best_metric_set: str | None = None  # which set picks the best checkpoint (default: first)


@dataclass
class TrainConfig:
    max_steps: int | None = None
    epochs: int | None = None
    batch_size: int = 64
    grad_clip: float | None = None
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: precision.resolve_precision
    compile: bool = False  # torch.compile the backbone (marginface.train.compiled)
    channels_last: bool = True  # backbone weights and inputs in channels_last memory format
    device: str = "cpu"
    log_interval: int = 10
    checkpoint_interval: int = 500
    keep_checkpoints: int = 3
    progress: bool = True
    sample_rate: float = 1.0  # Partial FC negative sampling rate (distributed runs)
    threads: int | None = None
    freeze_backbone_steps: int = 0  # the first N steps train the head alone (backbone frozen)


@dataclass
class Config:
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def config_from_dict(raw: Mapping[str, Any] | None) -> Config:
    """Validate a plain mapping (e.g. parsed YAML) into a :class:`Config`."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"config must be a mapping at the top level, got {type(raw).__name__}")
    config = from_mapping(Config, raw)
    _check_finite(config_to_dict(config), "")
    _check_values(config)
    _check_head(config.head)
    return config


def _check_finite(value: Any, path: str) -> None:
    """Every number of the config, options included, is finite (``lr: .inf`` like ``.nan``)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{path}: must be a finite number, got {value!r}")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_finite(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_finite(item, f"{path}[{i}]")


def _check_head(head: HeadConfig) -> None:
    """The head's own constructor checks (its declared ranges) on a 1-class, 1-dim head."""
    from marginface.train.builders import build_head

    try:
        build_head(head, 1, 1)
    except ValueError as error:
        text = str(error)
        if text.startswith("head."):
            raise ConfigError(text) from None
        argument = text.split(" ", 1)[0]
        key = argument if argument in ("scale", "margin") else f"options.{argument}"
        if argument not in ("scale", "margin") and argument not in head.options:
            key = "name"
        raise ConfigError(f"head.{key}: {head.name}: {text}") from None


def _check_values(c: Config) -> None:
    """Range checks that types alone cannot express."""
    checks = [
        ("train.batch_size", c.train.batch_size, c.train.batch_size >= 1),
        ("train.max_steps", c.train.max_steps, c.train.max_steps is None or c.train.max_steps >= 1),
        ("train.epochs", c.train.epochs, c.train.epochs is None or c.train.epochs >= 1),
        ("train.grad_clip", c.train.grad_clip, c.train.grad_clip is None or c.train.grad_clip > 0),
        ("train.keep_checkpoints", c.train.keep_checkpoints, c.train.keep_checkpoints >= 1),
        ("train.log_interval", c.train.log_interval, c.train.log_interval >= 1),
        ("train.checkpoint_interval", c.train.checkpoint_interval,
         c.train.checkpoint_interval >= 0),
        ("train.sample_rate", c.train.sample_rate, 0.0 < c.train.sample_rate <= 1.0),
        ("optimizer.lr", c.optimizer.lr, c.optimizer.lr > 0),
        ("optimizer.weight_decay", c.optimizer.weight_decay, c.optimizer.weight_decay >= 0),
        ("schedule.warmup_steps", c.schedule.warmup_steps, c.schedule.warmup_steps >= 0),
        ("schedule.milestones", c.schedule.milestones,
         list(c.schedule.milestones) == sorted(c.schedule.milestones)),
        ("eval.interval", c.eval.interval, c.eval.interval >= 0),
        ("eval.n_folds", c.eval.n_folds, c.eval.n_folds >= 2),
        ("model.input_size", c.model.input_size,
         8 <= min(c.model.input_size) and max(c.model.input_size) <= 1024),
        ("optimizer.momentum", c.optimizer.momentum, 0.0 <= c.optimizer.momentum < 1.0),
        ("optimizer.betas", c.optimizer.betas, all(0.0 <= b < 1.0 for b in c.optimizer.betas)),
        ("optimizer.eps", c.optimizer.eps, c.optimizer.eps > 0),
        ("optimizer.head_weight_decay", c.optimizer.head_weight_decay,
         c.optimizer.head_weight_decay is None or c.optimizer.head_weight_decay >= 0),
        ("schedule.milestones", c.schedule.milestones, all(m >= 1 for m in c.schedule.milestones)),
        ("schedule.gamma", c.schedule.gamma, c.schedule.gamma > 0),
        ("schedule.power", c.schedule.power, c.schedule.power > 0),
        ("schedule.min_lr", c.schedule.min_lr, c.schedule.min_lr >= 0),
        ("schedule.warmup_start_factor", c.schedule.warmup_start_factor,
         0.0 <= c.schedule.warmup_start_factor <= 1.0),
        ("data.num_workers", c.data.num_workers, c.data.num_workers >= 0),
        ("data.min_images_per_identity", c.data.min_images_per_identity,
         c.data.min_images_per_identity >= 1),
        ("train.freeze_backbone_steps", c.train.freeze_backbone_steps,
         c.train.freeze_backbone_steps >= 0),
    ]
    a = c.data.augment
    for name in ("scale", "translate", "brightness", "contrast", "saturation", "greyscale"):
        value = getattr(a, name)
        checks.append((f"data.augment.{name}", value, 0.0 <= value <= 1.0))
    s = c.data.synthetic
    checks += [
        ("data.synthetic.num_identities", s.num_identities, s.num_identities >= 2),
        ("data.synthetic.images_per_identity", s.images_per_identity, s.images_per_identity >= 1),
        ("data.synthetic.pair_identities", s.pair_identities, s.pair_identities >= 2),
        ("data.synthetic.num_pairs", s.num_pairs, s.num_pairs >= 2 * c.eval.n_folds),
    ]
    for path, value, ok in checks:
        if not ok:
            raise ValueError(f"{path}: invalid value {value!r}")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", c.train.device):
        raise ConfigError(f"train.device: expected cpu, cuda or cuda:N (the devices the trainer "
                          f"runs on), got {c.train.device!r}")
    if c.train.max_steps is None and c.train.epochs is None:
        raise ValueError("train.max_steps or train.epochs must be given")
    if c.data.kind == "synthetic" and c.data.min_images_per_identity > 1:
        raise ValueError("data.min_images_per_identity applies to data.kind folder, rec and "
                         "lfw (synthetic identities all have images_per_identity images)")
    if c.data.kind != "synthetic" and not c.data.path:
        raise ValueError(f"data.path is required for data.kind={c.data.kind!r}")
    for i, s_ in enumerate(c.eval.sets):
        if s_.kind != "synthetic" and not s_.path:
            raise ValueError(f"eval.sets[{i}].path is required for kind={s_.kind!r}")


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain YAML-safe mapping (tuples become lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(config))


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings to a raw mapping; values are parsed as YAML scalars."""
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set expects key.sub=value, got {item!r}")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ValueError(f"--set: malformed key {key!r}")
        try:
            value = load_yaml(text, f"--set {key}") if text.strip() else None
        except ConfigError as error:
            raise ConfigError(f"cannot parse the value {text!r}: {error}") from None
        node = raw
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ValueError(f"--set {key}: {'.'.join(parts[:depth + 1])} is not a mapping")
            node = child
        node[parts[-1]] = value
    return raw


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config (or the defaults when ``path`` is None) and apply ``--set`` overrides."""
    raw: Any = {}
    if path is not None:
        path = Path(path)
        raw = load_yaml(read_text(path, "config file"), path) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
    try:
        return config_from_dict(apply_overrides(raw, overrides))
    except ValueError as error:
        if path is None or str(error).startswith(str(path)):
            raise
        raise ConfigError(f"{path}: {error}") from None


def save_config(config: Config, path: str | Path) -> None:
    """Write ``config`` as YAML, atomically."""
    atomic_write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))
