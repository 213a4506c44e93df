"""Caffe solver settings (``solver.prototxt``): typed config, learning-rate policies, optimizer.

``SolverConfig.from_dict`` takes the solver's fields (a plain dict, or the prototxt parser's
message: any object whose ``items()`` yields ``(name, value or list of values)``), with Caffe's
field names. Fields that only steer Caffe's own process (``solver_mode``, ``device_id``, ...) are
kept in ``ignored``; a field Caffe does not define, or a value of the wrong type, is a
``ValueError`` from the one config checker (:mod:`marginface.typed`).

Learning-rate policies (Caffe's ``SGDSolver::GetLearningRate``), at iteration ``it``:
fixed ``base_lr``; step ``base_lr * gamma^floor(it/stepsize)``; exp ``base_lr * gamma^it``;
inv ``base_lr * (1 + gamma*it)^(-power)``; multistep ``base_lr * gamma^k`` with k the number of
``stepvalue`` entries <= it; poly ``base_lr * (1 - it/max_iter)^power``; sigmoid
``base_lr / (1 + exp(-gamma*(it - stepsize)))``. Computed in double precision (Caffe: float).

``CaffeSGD`` is Caffe's update rule, which differs from ``torch.optim.SGD`` when the rate changes:
``v = momentum*v + lr*lr_mult*(g/iter_size + weight_decay*decay_mult*w)``, ``w -= v``
(Nesterov: ``w -= (1+momentum)*v_new - momentum*v_old``), after clipping the global gradient
norm to ``clip_gradients`` when that is >= 0.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from marginface.caffe.caffe_sgd import CaffeSGD
from marginface.typed import from_mapping

__all__ = ["SolverConfig", "caffe_learning_rate", "CaffeSGD", "make_torch_optimizer",
           "make_lr_scheduler", "LR_POLICIES", "IGNORED_FIELDS"]

LR_POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")
#: SolverParameter fields that concern Caffe's process, not the maths of training.
IGNORED_FIELDS = frozenset({
    "solver_mode", "device_id", "debug_info", "snapshot_after_train", "snapshot_format",
    "snapshot_diff", "layer_wise_reduce", "test_compute_loss", "eval_type", "ap_version",
    "train_state", "test_state", "random_seed", "test_initialization", "average_loss",
    "weights",
})
_SOLVER_TYPES = {0: "SGD", 1: "Nesterov", 2: "AdaGrad", 3: "RMSProp", 4: "AdaDelta", 5: "Adam",
                 "SGD": "SGD", "NESTEROV": "Nesterov", "ADAGRAD": "AdaGrad",
                 "RMSPROP": "RMSProp", "ADADELTA": "AdaDelta", "ADAM": "Adam"}
_REPEATED = frozenset({"stepvalue", "test_iter", "test_net", "test_net_param"})


@dataclass
class SolverConfig:
    """The SolverParameter fields marginface uses, with Caffe's names and defaults."""

    base_lr: float
    lr_policy: str
    gamma: float = 0.0
    power: float = 0.0
    stepsize: int = 0
    stepvalue: list[int] = field(default_factory=list)
    momentum: float = 0.0
    weight_decay: float = 0.0
    regularization_type: str = "L2"
    clip_gradients: float = -1.0
    max_iter: int = 0
    iter_size: int = 1
    snapshot: int = 0
    snapshot_prefix: str = ""
    display: int = 0
    test_interval: int = 0
    test_iter: list[int] = field(default_factory=list)
    type: str = "SGD"
    net: str | None = None
    train_net: str | None = None
    test_net: list[str] = field(default_factory=list)
    net_param: Any = None
    train_net_param: Any = None
    test_net_param: list[Any] = field(default_factory=list)
    delta: float = 1e-8
    momentum2: float = 0.999
    rms_decay: float = 0.99
    ignored: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.lr_policy not in LR_POLICIES:
            raise ValueError(f"solver: lr_policy must be one of {LR_POLICIES}, "
                             f"got {self.lr_policy!r}")
        for name in ("base_lr", "gamma", "power", "momentum", "weight_decay", "clip_gradients"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"solver: {name} must be finite, got {getattr(self, name)!r}")
        if self.base_lr < 0:
            raise ValueError(f"solver: base_lr must be >= 0, got {self.base_lr!r}")
        if self.iter_size < 1:
            raise ValueError(f"solver: iter_size must be >= 1, got {self.iter_size!r}")
        if self.regularization_type not in ("L1", "L2"):
            raise ValueError(f"solver: regularization_type must be L1 or L2, "
                             f"got {self.regularization_type!r}")
        if self.lr_policy == "step" and self.stepsize <= 0:
            raise ValueError(f"solver: lr_policy 'step' needs stepsize > 0, "
                             f"got {self.stepsize!r}")
        if self.lr_policy == "multistep" and any(
                b <= a for a, b in zip(self.stepvalue, self.stepvalue[1:], strict=False)):
            raise ValueError(f"solver: stepvalue must increase strictly, got {self.stepvalue}")
        if self.lr_policy == "poly" and self.max_iter <= 0:
            raise ValueError(f"solver: lr_policy 'poly' needs max_iter > 0, "
                             f"got {self.max_iter!r}")

    @classmethod
    def from_dict(cls, fields: Any) -> SolverConfig:
        """Build from solver.prototxt fields (a dict or a parsed message), checking every field.

        Caffe's spelling is mapped first (repeated fields to lists, ``solver_type`` to ``type``,
        process-only fields to ``ignored``); names and value types are then checked by the one
        config checker, :func:`marginface.typed.from_mapping` (prototxt has real number
        literals, so a number written as a string is an error, as in Caffe).
        """
        items = fields.items() if hasattr(fields, "items") else None
        if items is None:
            raise ValueError(f"solver: expected a mapping of fields, got {type(fields).__name__}")
        values: dict[str, Any] = {}
        ignored: dict[str, Any] = {}
        for name, raw in items:
            name = str(name)
            occurrences = list(raw) if isinstance(raw, (list, tuple)) else [raw]
            if name in IGNORED_FIELDS:
                ignored[name] = occurrences[-1] if len(occurrences) == 1 else occurrences
                continue
            if name == "ignored":  # the dataclass's own record, not a Caffe field
                raise ValueError("solver: unknown field 'ignored'")
            if name == "solver_type":
                name, occurrences = "type", occurrences[-1:]
                if "type" in values:
                    raise ValueError("solver: both type and solver_type are given")
            if name in _REPEATED:
                values[name] = occurrences
            elif len(occurrences) != 1:
                raise ValueError(f"solver: field {name!r} is given {len(occurrences)} times")
            else:
                values[name] = occurrences[0]
        for required in ("base_lr", "lr_policy"):
            if required not in values:
                raise ValueError(f"solver: the field {required!r} is missing")
        if "type" in values:
            values["type"] = _solver_type(values["type"])
        return from_mapping(cls, {**values, "ignored": ignored}, "solver", numeric_strings=False)

    @classmethod
    def from_prototxt(cls, path_or_text: str | os.PathLike[str]) -> SolverConfig:
        """Read a solver.prototxt (a path, or the text itself) with the text-format parser."""
        from marginface.caffe.prototxt import parse_prototxt, read_prototxt

        text_like = isinstance(path_or_text, str) and (
            "\n" in path_or_text or (":" in path_or_text and not Path(path_or_text).is_file()))
        if text_like:
            source = "<solver text>"
            message = parse_prototxt(str(path_or_text), source)
        else:
            source = str(path_or_text)
            message = read_prototxt(path_or_text)
        try:
            return cls.from_dict(message)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None


def _solver_type(value: Any) -> str:
    key = value if isinstance(value, int) and not isinstance(value, bool) else str(value).upper()
    if key not in _SOLVER_TYPES:
        raise ValueError(f"solver: unknown solver type {value!r}")
    return _SOLVER_TYPES[key]


def caffe_learning_rate(config: SolverConfig, iteration: int) -> float:
    """The learning rate Caffe uses for the update of ``iteration`` (0-based)."""
    if not isinstance(iteration, int) or iteration < 0:
        raise ValueError(f"iteration must be an integer >= 0, got {iteration!r}")
    c, it = config, iteration
    if c.lr_policy == "fixed":
        return c.base_lr
    if c.lr_policy == "step":
        return c.base_lr * c.gamma ** (it // c.stepsize)
    if c.lr_policy == "exp":
        return c.base_lr * c.gamma ** it
    if c.lr_policy == "inv":
        return c.base_lr * (1.0 + c.gamma * it) ** (-c.power)
    if c.lr_policy == "multistep":
        step = 0
        while step < len(c.stepvalue) and it >= c.stepvalue[step]:
            step += 1
        return c.base_lr * c.gamma ** step
    if c.lr_policy == "poly":
        if it > c.max_iter:
            raise ValueError(f"iteration {it} is past max_iter {c.max_iter} (poly policy)")
        return c.base_lr * (1.0 - it / c.max_iter) ** c.power
    # sigmoid
    return c.base_lr * (1.0 / (1.0 + math.exp(-c.gamma * (it - c.stepsize))))


def make_torch_optimizer(config: SolverConfig,
                         param_groups: Iterable[tuple[Iterable[Tensor], float, float]]
                         ) -> CaffeSGD:
    """A ``CaffeSGD`` for ``(params, lr_mult, decay_mult)`` groups (Caffe's ParamSpec).

    Each group's ``lr`` starts at ``base_lr * lr_mult`` (iteration 0 of the policy); step it
    with ``make_lr_scheduler``. ``lr_mult`` 0 freezes a group. Solver types SGD and Nesterov.
    """
    if config.type not in ("SGD", "Nesterov"):
        raise ValueError(f"solver: type {config.type!r} is not supported (SGD, Nesterov)")
    rate0 = caffe_learning_rate(config, 0)
    groups = []
    for i, entry in enumerate(param_groups):
        try:
            params, lr_mult, decay_mult = entry
        except (TypeError, ValueError):
            raise ValueError(f"param_groups[{i}] must be (params, lr_mult, decay_mult)") from None
        if lr_mult < 0 or decay_mult < 0:
            raise ValueError(f"param_groups[{i}]: lr_mult and decay_mult must be >= 0, got "
                             f"{lr_mult!r}, {decay_mult!r}")
        groups.append({"params": list(params), "lr": rate0 * lr_mult, "lr_mult": lr_mult,
                       "decay_mult": decay_mult,
                       "weight_decay": config.weight_decay * decay_mult})
    return CaffeSGD(groups, lr=rate0, momentum=config.momentum,
                    weight_decay=config.weight_decay, nesterov=config.type == "Nesterov",
                    regularization=config.regularization_type, iter_size=config.iter_size,
                    clip_gradients=config.clip_gradients)


def make_lr_scheduler(config: SolverConfig, optimizer: torch.optim.Optimizer
                      ) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR giving each group ``caffe_learning_rate(it) * lr_mult``; call ``.step()`` once
    after every ``optimizer.step()`` (one Caffe iteration)."""
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", config.base_lr * group.get("lr_mult", 1.0))
    if config.base_lr == 0:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 0.0)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: caffe_learning_rate(config, it) / config.base_lr)

