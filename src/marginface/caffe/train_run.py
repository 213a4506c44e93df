"""``marginface train --caffe-net NET --caffe-solver SOLVER``: a Caffe net trained as a run.

The net's Data / ImageData layer is replaced by the dataset of the marginface config (``data``:
the embedded synthetic faces by default, an image folder or a ``.rec`` file), rendered or read at
``model.input_size`` and prepared as the layer's ``transform_param`` says
(:mod:`marginface.caffe.data_map`). The solver's settings drive the updates
(:func:`marginface.caffe.train.train_caffe_net`: learning-rate policy, momentum, weight decay,
``iter_size``, ``lr_mult``/``decay_mult``); ``max_steps`` overrides its ``max_iter``. The batch is
the data layer's ``batch_size`` (``train.batch_size`` when the layer has none).

The run directory gets what a marginface training run gets (``marginface.train``): the resolved
``config.yaml``, ``metrics.csv`` (step, epoch, loss, lr, images_per_second) every
``solver.display`` iterations (``train.log_interval`` when display is 0), atomic checkpoints
``checkpoints/step_*.ckpt`` (net state, optimizer state, iteration) every ``solver.snapshot``
iterations (``train.checkpoint_interval`` when 0) and at the end, keeping
``train.keep_checkpoints``; a tqdm progress bar; and the final weights as a Caffe snapshot
``<snapshot_prefix>_iter_<N>.caffemodel``, with copies of the net and solver files.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from marginface.atomic import atomic_write_bytes
from marginface.caffe.data_map import CaffeFeed, data_shape, net_data_layer
from marginface.caffe.net import load_net
from marginface.caffe.train import load_solver, train_caffe_net
from marginface.caffe.weights import save_caffemodel

__all__ = ["CaffeRun", "train_caffe_from_config"]


@dataclass
class CaffeRun:
    """What :func:`train_caffe_from_config` produced."""

    run_dir: Path
    losses: list[float]
    caffemodel: Path
    checkpoints: list[Path]


def train_caffe_from_config(net_path: str | Path, solver_path: str | Path, *,
                            config: str | Path | Any | None = None,
                            overrides: tuple[str, ...] | list[str] = (),
                            out: str | Path | None = None, max_steps: int | None = None,
                            tensorboard: bool = True) -> CaffeRun:
    """Train the Caffe net at ``net_path`` with ``solver_path`` on the config's dataset.

    ``config``: a YAML path, a ``marginface.train.config.Config`` or None (the defaults: the
    embedded synthetic faces); ``overrides`` are ``--set key=value`` strings.
    """
    from marginface.train.builders import build_train_dataset, check_train_dataset
    from marginface.train.checkpoint import CheckpointKeeper
    from marginface.train.config import Config, load_config, save_config
    from marginface.train.logging import MetricsWindow, RunLogger

    solver = load_solver(solver_path)
    iterations = solver.max_iter if max_steps is None else int(max_steps)
    if iterations <= 0:
        raise ValueError(f"max_steps must be > 0, got {iterations} (the solver's max_iter is "
                         f"{solver.max_iter})")
    if isinstance(config, Config):
        if overrides:
            raise ValueError("overrides need a config path (or None), not a Config object")
        cfg = config
    else:  # the solver, not the config, says how long to train (recorded in config.yaml)
        cfg = load_config(config, [f"train.max_steps={iterations}", "train.epochs=null",
                                   *overrides])
    torch.manual_seed(cfg.seed)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    probe = load_net(net_path, "TRAIN")
    data = net_data_layer(probe)
    batch = data.batch_size or cfg.train.batch_size
    size = tuple(cfg.model.input_size)
    dataset = build_train_dataset(cfg.data, size, cfg.seed)
    check_train_dataset(dataset, cfg.data.num_classes)
    net = load_net(net_path, "TRAIN",
                   input_shapes={data.tops[0]: data_shape(data, size, batch)})
    feed = CaffeFeed(net_data_layer(net), dataset, batch_size=batch, seed=cfg.seed,
                     num_workers=cfg.data.num_workers)

    name = Path(str(net_path)).stem if Path(str(net_path)).is_file() else net.name
    run_dir = Path(out) if out is not None else \
        Path("runs") / f"caffe-{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    for source in (Path(str(net_path)), Path(str(solver_path))):
        if source.is_file():
            atomic_write_bytes(run_dir / source.name, source.read_bytes())
    # the trainer's run records: metrics.csv / TensorBoard rows and kept checkpoints
    logger = RunLogger(run_dir, tensorboard=tensorboard)
    window = MetricsWindow(solver.display or cfg.train.log_interval, iterations)
    keeper = CheckpointKeeper(run_dir / "checkpoints", cfg.train.keep_checkpoints)
    save_every = solver.snapshot or cfg.train.checkpoint_interval
    images_per_iteration = batch * solver.iter_size
    written: list[Path] = []

    def on_iteration(iteration: int, loss: float, rate: float,
                     optimizer: torch.optim.Optimizer) -> None:
        window.add(images_per_iteration, loss)
        if window.due(iteration):
            speed, mean_loss = window.take()  # Caffe displays the mean over the window
            logger.log_step(iteration, {
                "epoch": iteration * images_per_iteration / len(dataset), "loss": mean_loss,
                "lr": rate, "images_per_second": speed})
        if (save_every and iteration % save_every == 0) or iteration == iterations:
            state = {"kind": "caffe", "iteration": iteration, "state_dict": net.state_dict(),
                     "optimizer": optimizer.state_dict(), "net": str(net_path),
                     "solver": str(solver_path)}
            written.append(keeper.save(state, iteration))

    try:
        # snapshots are the run's checkpoints (on_iteration), not train_caffe_net's own
        losses = train_caffe_net(net, dataclasses.replace(solver, snapshot=0), feed,
                                 max_iter=iterations,
                                 progress=cfg.train.progress, callback=on_iteration)
    finally:
        logger.close()
    prefix = Path(solver.snapshot_prefix).name or name
    caffemodel = run_dir / f"{prefix}_iter_{len(losses)}.caffemodel"
    save_caffemodel(net, caffemodel)
    return CaffeRun(run_dir, losses, caffemodel, [p for p in written if p.exists()])
