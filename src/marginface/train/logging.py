"""Run records: metrics.csv, verification.csv, TensorBoard events, PNG plots and summary.json.

``metrics.csv`` has one row per logged step with columns ``step, epoch, loss, lr,
images_per_second, grad_norm``; ``verification.csv`` one row per evaluation and pair set with
``step, set, accuracy_mean, accuracy_std, auc, eer``. After a resume both are cut back to the
resumed step, so a step never appears twice. Only rank 0 writes (``enabled=False`` elsewhere).
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from marginface.atomic import atomic_path, atomic_write, atomic_write_text

__all__ = ["METRIC_COLUMNS", "EVAL_COLUMNS", "RunLogger", "MetricsWindow", "plot_run",
           "format_summary", "write_summary"]

METRIC_COLUMNS = ("step", "epoch", "loss", "lr", "images_per_second", "grad_norm")
EVAL_COLUMNS = ("step", "set", "accuracy_mean", "accuracy_std", "auc", "eer")


def _read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _truncate(path: Path, columns: tuple[str, ...], last_step: int) -> None:
    rows = [r for r in _read_rows(path) if int(r["step"]) <= last_step]
    with atomic_write(path, "w", newline="") as handle:  # a crash keeps the untruncated file
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


class RunLogger:
    """Appends metrics to CSV and TensorBoard in ``run_dir``."""

    def __init__(self, run_dir: str | Path, *, enabled: bool = True, tensorboard: bool = True,
                 resume_step: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.metrics_path = self.run_dir / "metrics.csv"
        self.eval_path = self.run_dir / "verification.csv"
        self._writer = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for path, columns in ((self.metrics_path, METRIC_COLUMNS), (self.eval_path, EVAL_COLUMNS)):
            if resume_step is not None and path.is_file():
                _truncate(path, columns, resume_step)
            else:
                with atomic_write(path, "w", newline="") as handle:
                    csv.writer(handle).writerow(columns)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # slow import, only when used

            self._writer = SummaryWriter(str(self.run_dir / "tensorboard"),
                                         purge_step=resume_step + 1 if resume_step else None)

    def log_step(self, step: int, values: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        row = {"step": step, **{k: values.get(k, "") for k in METRIC_COLUMNS[1:]}}
        with self.metrics_path.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=METRIC_COLUMNS).writerow(row)
        if self._writer is not None:
            for key in ("loss", "lr", "images_per_second", "grad_norm"):
                value = values.get(key)
                if value is not None and value != "":
                    self._writer.add_scalar(f"train/{key}", float(value), step)

    def log_eval(self, step: int, name: str, report: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        row = {"step": step, "set": name, **{k: report.get(k, "") for k in EVAL_COLUMNS[2:]}}
        with self.eval_path.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=EVAL_COLUMNS).writerow(row)
        if self._writer is not None:
            for key in EVAL_COLUMNS[2:]:
                value = report.get(key)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self._writer.add_scalar(f"verification/{name}/{key}", float(value), step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None


class MetricsWindow:
    """The steps since the last logged one: when to log, and that row's images/s and mean loss.

    Shared by the marginface trainer and Caffe-solver runs: a row is due every ``interval``
    steps and at step ``total_steps``; :meth:`take` measures from the previous take (or from
    construction) and starts the next window.
    """

    def __init__(self, interval: int, total_steps: int) -> None:
        self.interval = max(int(interval), 1)
        self.total_steps = total_steps
        self._start = time.perf_counter()
        self._images = 0
        self._losses: list[float] = []

    def add(self, images: int, loss: float) -> None:
        """Count one step's images and loss."""
        self._images += images
        self._losses.append(loss)

    def due(self, step: int) -> bool:
        return step % self.interval == 0 or step == self.total_steps

    def take(self, now: float | None = None) -> tuple[float, float]:
        """``(images per second, mean loss)`` of the window, which then starts again."""
        now = time.perf_counter() if now is None else now
        rate = self._images / max(now - self._start, 1e-9)
        mean = sum(self._losses) / len(self._losses) if self._losses else math.nan
        self._start, self._images, self._losses = now, 0, []
        return rate, mean


def plot_run(run_dir: str | Path) -> list[Path]:
    """Write loss.png, lr.png and (when evaluated) verification.png from the run's CSV files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = _read_rows(run_dir / "metrics.csv")
    written = []
    steps = [int(r["step"]) for r in rows]
    for key, label, log in (("loss", "training loss", False), ("lr", "learning rate", False)):
        values = [float(r[key]) if r[key] not in ("", None) else math.nan for r in rows]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(steps, values, lw=1.2)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.set_yscale("log" if log else "linear")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = run_dir / f"{key}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
        plt.close(fig)
        written.append(path)
    evals = _read_rows(run_dir / "verification.csv")
    if evals:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for name in dict.fromkeys(r["set"] for r in evals):
            mine = [r for r in evals if r["set"] == name]
            ax.plot([int(r["step"]) for r in mine],
                    [100 * float(r["accuracy_mean"]) for r in mine], marker="o", label=name)
        ax.set_xlabel("step")
        ax.set_ylabel("verification accuracy (%)")
        ax.axhline(50, color="grey", lw=0.8, ls="--")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = run_dir / "verification.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
        plt.close(fig)
        written.append(path)
    return written


def format_summary(summary: Mapping[str, Any]) -> str:
    """The short text summary printed at the end of a run."""

    def pct(value: Any) -> str:
        return f"{100 * value:.2f}%" if isinstance(value, (int, float)) else "n/a"

    lines = [
        f"run: {summary.get('run_dir')}",
        f"steps: {summary.get('steps')} in {summary.get('seconds', 0):.1f} s "
        f"({summary.get('images_per_second', 0):.1f} img/s)",
        f"final loss: {summary.get('final_loss', float('nan')):.4f}",
        f"verification accuracy: final {pct(summary.get('final_accuracy'))}, "
        f"best {pct(summary.get('best_accuracy'))} at step {summary.get('best_step')}",
    ]
    if summary.get("skipped_images"):
        lines.append(f"unreadable images skipped: {summary['skipped_images']}")
    if summary.get("center_cropped_images"):
        lines.append(f"training images centre-cropped (no landmarks): "
                     f"{summary['center_cropped_images']}")
    if summary.get("excluded_images"):
        lines.append(f"images left out by data.exclude_list: {summary['excluded_images']}")
    return "\n".join(lines)


def write_summary(run_dir: str | Path, summary: Mapping[str, Any]) -> Path:
    path = Path(run_dir) / "summary.json"
    atomic_write_text(path, json.dumps(dict(summary), indent=2, default=float) + "\n")
    return path

