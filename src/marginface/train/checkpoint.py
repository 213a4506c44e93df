"""Checkpoints written atomically and verified on load.

File layout: the line ``MARGINFACE-CKPT 1 <sha256 hex> <payload bytes>`` then the payload, a
``torch.save`` of a dict (model, head, optimizers, scheduler, scaler, RNG states, sampler position,
step, config). Writing is atomic (:mod:`marginface.atomic`: temporary file in the same directory,
fsync, ``os.replace``, directory fsync): a crash leaves either the old file or the new one,
never half of one. Loading checks the header, the length and the hash, so a truncated or
corrupted file gives :class:`CheckpointError` naming it, and nothing ever deletes the previous
good checkpoint before the new one is safely on disk.
"""

from __future__ import annotations

import hashlib
import io
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from marginface.atomic import TEMP_GLOB, atomic_write_bytes
from marginface.inputs import require_file

__all__ = [
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "list_checkpoints",
    "latest_good_checkpoint",
    "prune_checkpoints",
    "capture_rng_state",
    "restore_rng_state",
    "checkpoint_name",
    "CheckpointKeeper",
]

_MAGIC = b"MARGINFACE-CKPT 1 "
_NAME = re.compile(r"^step_(\d{8,})\.ckpt$")


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupt or of another format."""


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}.ckpt"


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Atomically write ``state`` to ``path`` (:func:`marginface.atomic.atomic_write_bytes`)."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getbuffer()
    header = _MAGIC + f"{hashlib.sha256(payload).hexdigest()} {len(payload)}\n".encode()
    atomic_write_bytes(path, header, payload)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and verify a checkpoint; :class:`CheckpointError` if it is not whole."""
    path = require_file(path, "checkpoint")
    data = path.read_bytes()
    newline = data.find(b"\n", 0, 200)
    if not data.startswith(_MAGIC) or newline < 0:
        raise CheckpointError(f"{path}: not a marginface checkpoint (bad header)")
    try:
        digest, length = data[len(_MAGIC):newline].decode().split()
        length = int(length)
    except ValueError:
        raise CheckpointError(f"{path}: corrupt checkpoint header") from None
    payload = memoryview(data)[newline + 1:]
    if len(payload) != length:
        raise CheckpointError(
            f"{path}: truncated or partial checkpoint ({len(payload)} of {length} payload bytes)"
        )
    if hashlib.sha256(payload).hexdigest() != digest:
        raise CheckpointError(f"{path}: corrupt checkpoint (sha256 mismatch)")
    return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=False)


def list_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the periodic checkpoints in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for entry in directory.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry))
    return sorted(found)


def latest_good_checkpoint(directory: str | Path) -> tuple[Path, dict[str, Any]]:
    """Load the newest periodic checkpoint.

    A corrupt newest checkpoint is an error (it is never skipped silently); the message names the
    newest checkpoint that still verifies, which is kept on disk.
    """
    checkpoints = list_checkpoints(directory)
    if not checkpoints:
        raise FileNotFoundError(f"no checkpoint (step_*.ckpt) in {directory}")
    newest = checkpoints[-1][1]
    try:
        return newest, load_checkpoint(newest)
    except CheckpointError as error:
        previous = None
        for _, candidate in reversed(checkpoints[:-1]):
            try:
                load_checkpoint(candidate)
            except CheckpointError:
                continue
            previous = candidate
            break
        hint = (f"; the previous good checkpoint {previous} is kept: delete or move {newest.name}"
                " to resume from it" if previous else "; no earlier good checkpoint exists")
        raise CheckpointError(f"{error}{hint}") from None


def prune_checkpoints(directory: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` periodic checkpoints; returns what was deleted."""
    removed = []
    for _, path in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        path.unlink(missing_ok=True)
        removed.append(path)
    for stale in Path(directory).glob(TEMP_GLOB):  # leftovers of a crash mid-write
        stale.unlink(missing_ok=True)
    return removed


class CheckpointKeeper:
    """A run's ``checkpoints/`` directory: periodic ``step_<N>.ckpt`` files, the newest ``keep``
    kept. The one checkpoint routine of the marginface trainer and of Caffe-solver runs."""

    def __init__(self, directory: str | Path, keep: int) -> None:
        self.directory = Path(directory)
        self.keep = keep

    def save(self, state: dict[str, Any], step: int) -> Path:
        """Write ``step_<step>.ckpt`` atomically, then delete all but the newest ``keep``."""
        path = save_checkpoint(state, self.directory / checkpoint_name(step))
        prune_checkpoints(self.directory, self.keep)
        return path

    def save_named(self, state: dict[str, Any], name: str) -> Path:
        """Write a checkpoint that pruning never deletes (``best.ckpt``)."""
        return save_checkpoint(state, self.directory / name)


def capture_rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
