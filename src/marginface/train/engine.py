"""The training loop: data, precision, clipping, divergence stop, evaluation, checkpoints.

One :class:`Trainer` runs one run directory. Each step: a global batch from
:class:`~marginface.train.sampling.EpochBatchSampler`, uint8 images augmented
(``marginface.train.augment``, when configured), normalised with the backbone's stored
preprocessing by ``marginface.preprocessing.normalize``, as evaluation does (and flipped per image
from ``(seed, epoch)``), in channels_last when asked, the backbone (compiled with
``train.compile``, frozen for ``train.freeze_backbone_steps``) under the chosen
precision (fp32; bf16 autocast on CPU or CUDA; fp16 autocast with a gradient scaler on CUDA), the
head's loss in float32, backward, optional gradient-norm clipping, the optimizer and the
per-iteration LR schedule. A non-finite embedding or loss stops the run with
:class:`TrainingDiverged` naming the step, before any update, so the last checkpoint stays good.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from marginface.preprocessing import Preprocessing, preprocessing_of
from marginface.train import builders
from marginface.train.augment import augment_batch, augment_enabled
from marginface.train.batches import (
    UNCONFIGURED_PREPROCESSING,
    iterate_batches,
    make_loader,
    training_inputs,
)
from marginface.train.checkpoint import (
    CheckpointKeeper,
    capture_rng_state,
    latest_good_checkpoint,
    list_checkpoints,
    restore_rng_state,
)
from marginface.train.classifier import build_classifier
from marginface.train.compiled import CompiledBackbone
from marginface.train.config import Config, config_from_dict, config_to_dict, save_config
from marginface.train.distributed import DistContext, any_rank, wrap_backbone
from marginface.train.evaluation import best_metric, evaluate_pair_set
from marginface.train.init_from import init_backbone
from marginface.train.logging import MetricsWindow, RunLogger
from marginface.train.optim import build_run_optimizers
from marginface.train.precision import (
    autocast_context,
    check_precision,
    make_grad_scaler,
    resolve_precision,
)
from marginface.train.sampling import EpochBatchSampler
from marginface.train.strided_depthwise import use_fast_strided_depthwise
from marginface.train.summary import RunSummary, RunTotals, finish_run

__all__ = ["TrainingDiverged", "Trainer"]


class TrainingDiverged(RuntimeError):
    """The loss (or the embeddings) became NaN/inf; the message names the step."""


class Trainer:
    """Trains ``config`` into ``run_dir``; ``model``/``head``/datasets may be given directly."""

    def __init__(
        self,
        config: Config | None,
        run_dir: str | Path,
        *,
        model: nn.Module | None = None,
        head: nn.Module | None = None,
        train_dataset: Dataset | None = None,
        pair_sets: list[Any] | None = None,
        resume: bool = False,
        max_steps: int | None = None,
        ctx: DistContext | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        resume_state = None
        self.resumed_from: Path | None = None
        if resume:
            # the run's own config, from its newest checkpoint; only the length may change
            self.resumed_from, resume_state = latest_good_checkpoint(self.ckpt_dir)
            config = config_from_dict(resume_state["config"])
        if config is None:
            raise ValueError("a config is required unless resuming")
        if max_steps is not None:
            config.train.max_steps = int(max_steps)
        self.ctx = ctx or DistContext(device=torch.device(config.train.device))
        self.config = c = config
        # "auto" is resolved here, once per run (the saved config keeps what the user wrote)
        self.precision = resolve_precision(c.train.precision, c.train.compile, self.ctx.device,
                                           c.train.channels_last)
        check_precision(self.precision, self.ctx.device)
        if c.train.threads:
            torch.set_num_threads(c.train.threads)
        torch.manual_seed(c.seed)
        input_size = tuple(c.model.input_size)

        # data first: every bad-input error comes before any model is built
        self.train_dataset = train_dataset if train_dataset is not None else \
            builders.build_train_dataset(c.data, input_size, c.seed)
        self.num_classes = builders.check_train_dataset(self.train_dataset, c.data.num_classes)
        excluded = getattr(self.train_dataset, "excluded", 0)
        if excluded and self.ctx.is_main:
            print(f"data.exclude_list: {excluded} image(s) left out, "
                  f"{len(self.train_dataset)} remain")
        self.sampler = EpochBatchSampler(len(self.train_dataset), c.train.batch_size, seed=c.seed,
                                         rank=self.ctx.rank, world_size=self.ctx.world_size)
        self.total_steps = c.train.max_steps or c.train.epochs * self.sampler.steps_per_epoch
        self.pair_sets = pair_sets if pair_sets is not None else (
            builders.build_pair_sets(c.eval, c.data, input_size) if self.ctx.is_main else [])

        self.model = (model if model is not None else builders.build_model(c.model))
        if c.model.init_from and resume_state is None:  # on resume the checkpoint has it all
            init_backbone(self.model, c.model.init_from)
        dropped = getattr(self.train_dataset, "dropped", None)
        if dropped is not None and self.ctx.is_main:
            print(f"marginface train: {dropped.message()}")
        if self._center_cropped() and self.ctx.is_main:
            print(f"marginface train: {self._center_cropped()} training image(s) have no "
                  f"landmarks and are centre-cropped, unaligned")
        self.model.to(self.ctx.device)
        self.memory_format = (torch.channels_last if c.train.channels_last
                              else torch.contiguous_format)
        if c.train.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if self.precision == "bf16" and self.ctx.device.type == "cpu":
            use_fast_strided_depthwise(self.model)  # oneDNN's bf16 gradient is slow there
        self.preprocessing = preprocessing_of(self.model, default=UNCONFIGURED_PREPROCESSING)
        embedding_dim = builders.model_embedding_dim(self.model, input_size)
        if head is None:
            head = builders.build_head(c.head, embedding_dim, self.num_classes)
        if getattr(head, "num_classes", self.num_classes) != self.num_classes:
            raise ValueError(f"the head has num_classes={head.num_classes} but the dataset "
                             f"has {self.num_classes} identities")
        self.classifier = build_classifier(head.to(self.ctx.device), self.ctx,
                                           sample_rate=c.train.sample_rate)
        self.backbone = wrap_backbone(self.model, self.ctx)
        if c.train.compile:
            self.backbone = CompiledBackbone(self.backbone)

        self.optimizer, self.head_optimizer, self.scheduler = build_run_optimizers(
            c, self.model, self.classifier, self.total_steps)
        self.scaler = make_grad_scaler(self.precision)
        self.step = 0
        self._loader: DataLoader | None = None
        self.best_accuracy: float | None = None
        self.best_step: int | None = None
        self.history: list[dict[str, Any]] = []
        if resume_state is not None:
            self._load_state(resume_state)
        self.logger = RunLogger(self.run_dir, enabled=self.ctx.is_main,
                                resume_step=self.step if resume else None)
        self.checkpoints = CheckpointKeeper(self.ckpt_dir, c.train.keep_checkpoints)
        if self.ctx.is_main:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.config, self.run_dir / "config.yaml")

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything to continue exactly; the classifier and its optimizer state whole."""
        return {
            "step": self.step,
            "sampler_step": self.step,
            "config": config_to_dict(self.config),
            "model": self.model.state_dict(),
            "head": self.classifier.full_state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "head_optimizer": self.classifier.full_optimizer_state(self.head_optimizer),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng_state(),
            "best_accuracy": self.best_accuracy,
            "best_step": self.best_step,
            "world_size": self.ctx.world_size,
            # model.init_from replaces the backbone's stored preprocessing: keep it with the run
            "preprocessing": self.preprocessing.to_dict(),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if "preprocessing" in state:  # checkpoints before issue #12 have none
            self.preprocessing = Preprocessing.from_config(state["preprocessing"])
            if hasattr(self.model, "config"):
                self.model.config = dataclasses.replace(self.model.config,
                                                        preprocessing=self.preprocessing)
        self.classifier.load_full_state_dict(state["head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.classifier.load_full_optimizer_state(self.head_optimizer, state["head_optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"])
        self.step = int(state["step"])
        self.best_accuracy, self.best_step = state["best_accuracy"], state["best_step"]

    def save(self, name: str | None = None) -> Path | None:
        """Write a checkpoint (rank 0 writes; every rank joins the gather)."""
        state = self.state_dict()
        if not self.ctx.is_main:
            return None
        if name is not None:
            return self.checkpoints.save_named(state, name)
        return self.checkpoints.save(state, self.step)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict[str, dict[str, Any]]:
        if not self.ctx.is_main:
            return {}
        e = self.config.eval
        autocast = torch.bfloat16 if self.precision == "bf16" else None
        reports = {}
        for pair_set in self.pair_sets:
            report = evaluate_pair_set(self.model, pair_set, preprocessing=self.preprocessing,
                                       batch_size=e.batch_size, flip=e.flip, n_folds=e.n_folds,
                                       device=self.ctx.device, autocast_dtype=autocast)
            reports[pair_set.name] = report
            self.logger.log_eval(self.step, pair_set.name, report)
        self.history.append({"step": self.step, **{k: v["accuracy_mean"]
                                                    for k, v in reports.items()}})
        return reports

    def _track_best(self, reports: dict[str, dict[str, Any]]) -> bool:
        accuracy = best_metric(reports, self.config.eval.best_metric_set)
        if accuracy is not None and (self.best_accuracy is None or accuracy > self.best_accuracy):
            self.best_accuracy, self.best_step = accuracy, self.step
            return True
        return False

    # ------------------------------------------------------------------ the loop
    def _batches(self):
        if self._loader is None:
            self._loader = make_loader(self.train_dataset, self.sampler,
                                       self.config.data.num_workers,
                                       pin_memory=self.ctx.device.type == "cuda")
        return iterate_batches(self._loader, self.sampler, num_images=len(self.train_dataset),
                               seed=self.config.seed, flip=self.config.data.flip,
                               current_step=lambda: self.step, total_steps=self.total_steps,
                               augment=augment_enabled(self.config.data.augment))

    def _train_step(self, images: torch.Tensor, labels: torch.Tensor,
                    flips: torch.Tensor | None,
                    draws: torch.Tensor | None = None) -> tuple[float, float | None]:
        dev = self.ctx.device
        augment = None if draws is None else functools.partial(
            augment_batch, draws=draws, config=self.config.data.augment)
        x = training_inputs(images, flips, self.preprocessing, dev, augment)
        if self.memory_format is torch.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        labels = labels.to(dev, non_blocking=True).long()
        # train.freeze_backbone_steps: the head learns alone on a fixed backbone (eval-mode BN,
        # no backbone graph) before the whole network trains
        frozen = self.step < self.config.train.freeze_backbone_steps
        self.model.train(not frozen)
        with autocast_context(self.precision, dev), torch.set_grad_enabled(not frozen):
            embeddings = self.backbone(x)
        embeddings = embeddings.float()
        step_no = self.step + 1
        if any_rank(not bool(torch.isfinite(embeddings).all()), self.ctx):
            raise TrainingDiverged(f"non-finite embeddings at step {step_no}")
        loss = self.classifier.loss(embeddings, labels)
        if any_rank(not bool(torch.isfinite(loss)), self.ctx):
            raise TrainingDiverged(f"non-finite loss ({float(loss.detach())}) at step {step_no}")
        self.optimizer.zero_grad(set_to_none=True)
        self.head_optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        grad_norm = None
        if self.config.train.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            self.scaler.unscale_(self.head_optimizer)
            grad_norm = self.classifier.clip_grad_norm(
                list(self.model.parameters()), self.config.train.grad_clip)
        if not frozen:
            self.scaler.step(self.optimizer)
        self.scaler.step(self.head_optimizer)
        self.scaler.update()
        self.scheduler.step()
        return float(loss.detach()), grad_norm

    def fit(self, *, stop_after: int | None = None) -> RunSummary:
        """Run to ``total_steps`` (or stop after step ``stop_after``, as if interrupted)."""
        c = self.config
        start_step = self.step
        bar = tqdm(total=self.total_steps, initial=self.step, unit="step", dynamic_ncols=True,
                   disable=not (c.train.progress and self.ctx.is_main), desc="train")
        train_seconds, images_seen, loss_value = 0.0, 0, math.nan
        window = MetricsWindow(c.train.log_interval, self.total_steps)
        started = time.perf_counter()
        last_ckpt = None
        try:
            tick = time.perf_counter()
            for images, labels, flips, draws in self._batches():
                try:
                    loss_value, grad_norm = self._train_step(images, labels, flips, draws)
                except TrainingDiverged as error:
                    found = list_checkpoints(self.ckpt_dir)
                    good = last_ckpt or (found[-1][1] if found else None)
                    raise TrainingDiverged(
                        f"{error}; training stopped. Last good checkpoint: {good or 'none'}"
                    ) from None
                self.step += 1
                now = time.perf_counter()
                train_seconds += now - tick
                batch_images = images.shape[0] * self.ctx.world_size
                images_seen += batch_images
                window.add(batch_images, loss_value)
                lr = self.scheduler.get_last_lr()[0]
                if window.due(self.step):
                    rate, _ = window.take(now)  # the row shows this step's loss, not the mean
                    self.logger.log_step(self.step, {
                        "epoch": self.step / self.sampler.steps_per_epoch, "loss": loss_value,
                        "lr": lr, "images_per_second": rate,
                        "grad_norm": "" if grad_norm is None else grad_norm})
                    bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.2e}",
                                    img_s=f"{rate:.0f}")
                bar.update(1)
                if c.eval.interval and self.step % c.eval.interval == 0 \
                        and self.step < self.total_steps:
                    self._evaluate_and_keep_best()
                if c.train.checkpoint_interval and self.step % c.train.checkpoint_interval == 0:
                    last_ckpt = self.save()
                if stop_after is not None and self.step >= stop_after:
                    break
                tick = time.perf_counter()
        finally:
            bar.close()
        interrupted = self.step < self.total_steps
        if interrupted:
            self.logger.close()
            return RunSummary(steps=self.step, interrupted=True)
        reports = self._evaluate_and_keep_best()
        self.save()
        self.logger.close()
        if not self.ctx.is_main:
            return RunSummary(steps=self.step)
        totals = RunTotals(self.step, start_step, images_seen, train_seconds,
                           time.perf_counter() - started, loss_value)
        return finish_run(self.run_dir, totals, reports,
                          best_metric_set=c.eval.best_metric_set,
                          best_accuracy=self.best_accuracy, best_step=self.best_step,
                          world_size=self.ctx.world_size, num_classes=self.num_classes,
                          skipped=getattr(self.train_dataset, "skipped", 0), model=self.model,
                          extra=self._summary_extra())

    def _summary_extra(self) -> dict[str, Any]:
        dropped = getattr(self.train_dataset, "dropped", None)
        return {"precision": self.precision,
                "compiled": bool(getattr(self.backbone, "active", False)),
                "dropped_identities": dropped.identities if dropped else 0,
                "dropped_images": dropped.images if dropped else 0,
                "excluded_images": int(getattr(self.train_dataset, "excluded", 0)),
                "center_cropped_images": self._center_cropped()}

    def _center_cropped(self) -> int:
        # the lfw kind counts its images without landmarks; wrappers (identity filters,
        # exclusion lists) keep the dataset they wrap in .dataset
        dataset = self.train_dataset
        while dataset is not None and not hasattr(dataset, "centre_cropped"):
            dataset = getattr(dataset, "dataset", None)
        return int(getattr(dataset, "centre_cropped", 0))

    def _evaluate_and_keep_best(self) -> dict[str, dict[str, Any]]:
        reports = self.evaluate()  # rank 0 only
        # saving gathers the sharded classifier: every rank must take part, so rank 0's
        # decision is shared with all of them
        if any_rank(self._track_best(reports), self.ctx):
            self.save("best.ckpt")
        return reports
