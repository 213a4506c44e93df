"""The end of a run: summary.json, the plots and the backbone's model file."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from marginface.atomic import atomic_write
from marginface.train.logging import format_summary, plot_run, write_summary

__all__ = ["RunTotals", "RunSummary", "finish_run", "save_model_file", "count_skipped"]


@dataclass(frozen=True)
class RunTotals:
    """What the loop counted: steps (all, this session), images, seconds, the last loss."""

    steps: int
    start_step: int
    images_seen: int
    train_seconds: float
    seconds: float
    final_loss: float


@dataclass(frozen=True)
class RunSummary:
    """What :meth:`Trainer.fit <marginface.train.engine.Trainer.fit>` returns.

    A finished run on rank 0 has every field (the same as ``summary.json``, plus ``text``); an
    interrupted run (``interrupted=True``) or another rank has ``steps`` only.
    """

    run_dir: str | None = None
    steps: int = 0
    steps_this_session: int | None = None
    final_loss: float | None = None
    final_accuracy: float | None = None
    best_accuracy: float | None = None
    best_step: int | None = None
    images_per_second: float | None = None
    seconds: float | None = None
    train_seconds: float | None = None
    world_size: int | None = None
    num_classes: int | None = None
    verification: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped_images: int = 0
    excluded_images: int = 0  # left out by data.exclude_list
    dropped_identities: int = 0  # data.min_images_per_identity: identities left out
    dropped_images: int = 0  # ... and their images
    center_cropped_images: int = 0  # lfw kind: images without landmarks, centre-cropped
    precision: str | None = None  # the precision used (train.precision "auto" resolved)
    compiled: bool | None = None  # whether the backbone ran compiled to the end (train.compile)
    interrupted: bool = False
    text: str = ""  # the short report printed at the end (empty when not finished)

    def to_dict(self) -> dict[str, Any]:
        """The ``summary.json`` record: every field but ``interrupted`` and ``text``."""
        record = dataclasses.asdict(self)
        del record["interrupted"], record["text"]
        return record


def count_skipped(skipped: Any) -> int:
    """Datasets report skipped images as a count or as a list of them."""
    return len(skipped) if isinstance(skipped, (list, tuple)) else int(skipped or 0)


def save_model_file(model: nn.Module, run_dir: Path) -> Path:
    """``model.safetensors`` (with its config) for marginface models, else ``model.pt``."""
    from marginface.models import save_model

    if hasattr(model, "config"):
        path = run_dir / "model.safetensors"
        save_model(model, path)
    else:  # a backbone from outside marginface.models: plain state dict
        path = run_dir / "model.pt"
        with atomic_write(path) as handle:
            torch.save(model.state_dict(), handle)
    return path


def finish_run(run_dir: Path, totals: RunTotals, reports: dict[str, dict[str, Any]], *,
               best_metric_set: str | None, best_accuracy: float | None,
               best_step: int | None, world_size: int, num_classes: int, skipped: Any,
               model: nn.Module, extra: dict[str, Any] | None = None) -> RunSummary:
    """Write the model file, summary.json and the plots; return the summary (with ``text``).

    ``extra``: more :class:`RunSummary` fields (precision, compiled, dropped identities/images).
    """
    key = best_metric_set or (next(iter(reports)) if reports else None)
    summary = RunSummary(
        run_dir=str(run_dir),
        steps=totals.steps,
        steps_this_session=totals.steps - totals.start_step,
        final_loss=totals.final_loss,
        final_accuracy=reports[key]["accuracy_mean"] if key else None,
        best_accuracy=best_accuracy,
        best_step=best_step,
        images_per_second=(totals.images_seen / totals.train_seconds
                           if totals.train_seconds else 0.0),
        seconds=totals.seconds,
        train_seconds=totals.train_seconds,
        world_size=world_size,
        num_classes=num_classes,
        verification={k: {m: v.get(m) for m in ("accuracy_mean", "accuracy_std", "auc", "eer",
                                                 "pairs")}
                      for k, v in reports.items()},
        skipped_images=count_skipped(skipped),
        **(extra or {}),
    )
    save_model_file(model, run_dir)
    record = summary.to_dict()
    write_summary(run_dir, record)
    plot_run(run_dir)
    return dataclasses.replace(summary, text=format_summary(record))
