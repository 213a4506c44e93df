"""Train a loaded Caffe net with its solver's settings, as Caffe's ``SGDSolver`` does.

Each iteration: ``iter_size`` forward/backward passes accumulate gradients of the net's loss
(the sum of its loss tops times their ``loss_weight``); then Caffe's update with the solver's
learning-rate policy, momentum, weight decay and every blob's ``lr_mult``/``decay_mult``
(``marginface.caffe.solver``: ``CaffeSGD``, ``caffe_learning_rate``). The recorded loss of an
iteration is the mean over its ``iter_size`` passes (what Caffe displays). Every ``snapshot``
iterations the net's ``state_dict`` is written to ``snapshot_dir`` atomically
(:mod:`marginface.atomic`) as ``<prefix>_iter_<N>.pt``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from marginface.atomic import atomic_write
from marginface.caffe.net import CaffeNet
from marginface.caffe.prototxt import Message, read_prototxt

__all__ = ["train_caffe_net", "load_solver", "snapshot_path"]


def load_solver(solver: Any) -> Any:
    """A ``SolverConfig`` from a config, a parsed message, a dict or a solver.prototxt path."""
    from marginface.caffe.solver import SolverConfig

    if isinstance(solver, SolverConfig):
        return solver
    if isinstance(solver, (str, Path)):
        solver = read_prototxt(solver)
    if isinstance(solver, (Message, Mapping)):
        return SolverConfig.from_dict(solver)
    raise ValueError(f"solver must be a SolverConfig, a dict of solver fields or a path, got "
                     f"{type(solver).__name__}")


def snapshot_path(directory: str | Path, prefix: str, iteration: int) -> Path:
    name = Path(prefix).name if prefix else "snapshot"
    return Path(directory) / f"{name}_iter_{iteration}.pt"


def _save_snapshot(state: dict[str, Any], path: Path) -> None:
    """A plain ``torch.save`` file (``torch.load`` reads it), written atomically."""
    with atomic_write(path) as handle:
        torch.save(state, handle)


class _Batches:
    """Cycles a re-iterable source (a list, a DataLoader); a one-shot iterator may run out."""

    def __init__(self, source: Iterable[Mapping[str, Tensor]]) -> None:
        self.source = source
        self.restartable = iter(source) is not source
        self.it: Iterator[Mapping[str, Tensor]] = iter(source)

    def next(self) -> Mapping[str, Tensor] | None:
        try:
            return next(self.it)
        except StopIteration:
            if not self.restartable:
                return None
            self.it = iter(self.source)
            return next(self.it, None)


def train_caffe_net(net: CaffeNet, solver_config: Any,
                    batches: Iterable[Mapping[str, Tensor]], *, max_iter: int | None = None,
                    progress: bool = True, snapshot_dir: str | Path | None = None,
                    callback: Callable[[int, float, float, torch.optim.Optimizer], None]
                    | None = None) -> list[float]:
    """Run ``max_iter`` (default: the solver's) Caffe iterations; returns the loss per iteration.

    ``batches`` yields dicts of the net's input tensors (``{"data": x, "label": y}``) and is
    cycled when it can be iterated again. ``solver_config``: a ``SolverConfig``, a dict / parsed
    message of solver fields, or a solver.prototxt path. Snapshots need ``snapshot_dir``.
    ``callback(iteration, loss, rate, optimizer)`` runs after each update (iteration counts from
    1): the hook for run logs and checkpoints (``marginface.caffe.train_run``).
    """
    from marginface.caffe.solver import caffe_learning_rate, make_torch_optimizer

    solver = load_solver(solver_config)
    iterations = solver.max_iter if max_iter is None else int(max_iter)
    if iterations <= 0:
        raise ValueError(f"max_iter must be > 0, got {iterations} (give max_iter or set it in "
                         "the solver)")
    if solver.snapshot and snapshot_dir is None:
        warnings.warn(f"solver asks for a snapshot every {solver.snapshot} iterations but no "
                      "snapshot_dir was given: no snapshots are written", stacklevel=2)
    source = _Batches(batches)
    first = source.next()
    if first is None:
        raise ValueError("batches is empty")
    if not net.ready:  # create the lazy parameters from the first batch's shapes
        net.infer_shapes({k: tuple(v.shape) for k, v in first.items()})
    optimizer = make_torch_optimizer(solver, net.param_mults())
    losses: list[float] = []
    bar = tqdm(range(iterations), desc=f"caffe {net.name}", disable=not progress)
    pending: Mapping[str, Tensor] | None = first
    for it in bar:
        rate = caffe_learning_rate(solver, it)
        for group in optimizer.param_groups:
            group["lr"] = rate * group["lr_mult"]
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(solver.iter_size):
            batch = pending if pending is not None else source.next()
            pending = None
            if batch is None:
                warnings.warn(f"batches ran out after {len(losses)} iterations", stacklevel=2)
                bar.close()
                return losses
            loss = net.loss(net(**batch))
            loss.backward()  # CaffeSGD divides the accumulated gradient by iter_size
            total += float(loss.detach())
        optimizer.step()
        losses.append(total / solver.iter_size)
        bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{rate:.3g}")
        done = it + 1
        if callback is not None:
            callback(done, losses[-1], rate, optimizer)
        if solver.snapshot and snapshot_dir is not None and done % solver.snapshot == 0:
            _save_snapshot({"state_dict": net.state_dict(), "iteration": done},
                           snapshot_path(snapshot_dir, solver.snapshot_prefix, done))
    bar.close()
    return losses
