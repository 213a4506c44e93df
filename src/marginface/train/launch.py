"""Entry points behind ``marginface train`` and ``marginface demo``.

:func:`run_training` resolves the config (file + ``--set`` overrides, or the run's own saved
config on ``--resume``), joins the torchrun process group when launched under torchrun, trains and
returns the summary. :func:`run_demo` trains the embedded default (:data:`DEMO_OVERRIDES`) and
prints held-out verification accuracy as it rises.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from marginface.train.config import Config, apply_overrides, load_config
from marginface.train.distributed import init_distributed, shutdown_distributed
from marginface.train.engine import Trainer
from marginface.train.summary import RunSummary

__all__ = ["run_training", "run_demo", "resolve_config", "DEMO_OVERRIDES", "DEMO_MAX_STEPS",
           "default_run_dir"]

# The demo: a MobileFaceNet at half width on 64x64 renders (input size documented in
# docs/training.md), CosFace head, 96 synthetic identities, evaluated on 40 held-out identities.
DEMO_OVERRIDES: tuple[str, ...] = (
    "model.name=mobilefacenet",
    "model.input_size=[64, 64]",
    "model.embedding_dim=128",
    "head.name=cosface",
    "head.scale=30.0",
    "head.margin=0.35",
    "data.kind=synthetic",
    "data.synthetic.num_identities=96",
    "data.synthetic.images_per_identity=24",
    "data.synthetic.pair_identities=40",
    "data.synthetic.num_pairs=600",
    "optimizer.name=sgd",
    "optimizer.lr=0.1",
    "optimizer.weight_decay=1e-4",
    "schedule.name=poly",
    "schedule.warmup_steps=20",
    "train.max_steps=150",
    "train.batch_size=64",
    "train.checkpoint_interval=50",
    "train.log_interval=10",
    "eval.interval=50",
    "seed=0",
)
# The demo's step budget: also that of `marginface train` without a config and a step count.
DEMO_MAX_STEPS: int = int(next(o.split("=", 1)[1] for o in DEMO_OVERRIDES
                               if o.startswith("train.max_steps=")))


def _gives_length(overrides: Sequence[str]) -> bool:
    """Whether the ``--set`` overrides give ``train.max_steps`` or ``train.epochs``."""
    train = apply_overrides({}, overrides).get("train")
    return isinstance(train, dict) and any(
        train.get(key) is not None for key in ("max_steps", "epochs"))


def resolve_config(config_path: str | Path | None, overrides: Sequence[str] = (),
                   max_steps: int | None = None) -> Config:
    """The config of a new run: file + overrides + ``max_steps``.

    Without a config file and without a step count (``max_steps``, ``train.max_steps`` or
    ``train.epochs``) the run is the embedded synthetic default for :data:`DEMO_MAX_STEPS`
    steps, the demo's budget (docs/training.md); a config file must give its own length.
    """
    extra = list(overrides)
    if max_steps is not None:
        extra.append(f"train.max_steps={int(max_steps)}")
    elif config_path is None and not _gives_length(extra):
        extra.append(f"train.max_steps={DEMO_MAX_STEPS}")
    return load_config(config_path, extra)


def default_run_dir(config_path: str | Path | None) -> Path:
    stem = Path(config_path).stem if config_path else "default"
    return Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_training(
    config_path: str | Path | None = None,
    overrides: Sequence[str] = (),
    *,
    out: str | Path | None = None,
    max_steps: int | None = None,
    resume: str | Path | None = None,
    stop_after: int | None = None,
) -> RunSummary:
    """Train as configured; returns the summary (every field on rank 0, ``steps`` elsewhere)."""
    if resume is not None:
        run_dir = Path(resume)
        if config_path is not None or overrides:
            raise ValueError("--resume continues a run with its own saved config: drop --config "
                             "and --set (only --max-steps may change)")
        if out is not None and Path(out) != run_dir:
            raise ValueError("--out and --resume name different run directories")
        if not (run_dir / "checkpoints").is_dir():
            raise FileNotFoundError(f"--resume: {run_dir} has no checkpoints/ directory")
        config = None
        device = load_config(run_dir / "config.yaml").train.device
    else:
        config = resolve_config(config_path, overrides, max_steps)
        device = config.train.device
        run_dir = Path(out) if out is not None else default_run_dir(config_path)
    ctx = init_distributed(device)
    try:
        trainer = Trainer(config, run_dir, resume=resume is not None, ctx=ctx,
                          max_steps=max_steps if resume is not None else None)
        summary = trainer.fit(stop_after=stop_after)
    finally:
        shutdown_distributed(ctx)
    if ctx.is_main and summary.text:
        print(summary.text)
    return summary


def run_demo(out: str | Path | None = None, *, max_steps: int | None = None,
             overrides: Sequence[str] = ()) -> RunSummary:
    """Train the embedded default and print verification accuracy on held-out identities."""
    run_dir = Path(out) if out is not None else default_run_dir("demo")
    extra = [*DEMO_OVERRIDES, *overrides]
    if max_steps is not None:
        extra.append(f"train.max_steps={int(max_steps)}")
    config = load_config(None, extra)
    print(f"marginface demo: {config.model.name} {tuple(config.model.input_size)}, "
          f"{config.head.name} head, {config.data.synthetic.num_identities} synthetic identities; "
          f"verification on {config.data.synthetic.pair_identities} held-out identities "
          f"({config.data.synthetic.num_pairs} pairs, chance = 50%). Run dir: {run_dir}")
    trainer = Trainer(config, run_dir)
    before = trainer.evaluate()
    name = next(iter(before))
    print(f"step 0 (untrained): accuracy {100 * before[name]['accuracy_mean']:.1f}%")
    summary = trainer.fit()
    for row in trainer.history[1:]:
        print(f"step {row['step']}: accuracy {100 * row[name]:.1f}%")
    print(summary.text)
    return summary
