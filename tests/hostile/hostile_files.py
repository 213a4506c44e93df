"""Helpers of the files-and-formats hostile tests: tiny image folders, a snapshot of a folder's
bytes, a fault injected into the N-th call of a function, and a file-size limit (a "disk full"
for this process: ``RLIMIT_FSIZE`` makes a write past the limit fail with EFBIG)."""

from __future__ import annotations

import resource
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def make_faces(root: Path, counts: dict[str, int], size: tuple[int, int] = (24, 20),
               seed: int = 0) -> Path:
    """ROOT/<identity>/<k>.jpg noise images of ``size`` (W, H)."""
    rng = np.random.default_rng(seed)
    for name, count in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(count):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{k:03d}.jpg", quality=90)
    return root


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (hidden temporary files included) -> its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def fail_on_call(target: Callable[..., Any], n: int, error: BaseException) -> Callable[..., Any]:
    """``target`` that raises ``error`` on its ``n``-th call (1-based), else calls through."""
    calls = [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == n:
            raise error
        return target(*args, **kwargs)

    wrapper.calls = calls  # type: ignore[attr-defined]
    return wrapper


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Writes beyond ``limit`` bytes in any file fail (OSError EFBIG) inside the block."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the error, not the signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
