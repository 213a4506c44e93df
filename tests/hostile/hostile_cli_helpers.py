"""Helpers of the hostile CLI tests: run ``marginface`` in-process and check the one-line error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

import marginface.models as models
from marginface.cli.main import main
from marginface.data import write_pairs_list

# pairs of 2 people x 2 random images: both kinds, only same, only different
BALANCED = [("p0/0.png", "p0/1.png", True), ("p0/0.png", "p1/1.png", False),
            ("p1/0.png", "p1/1.png", True), ("p1/0.png", "p0/1.png", False)]
ONLY_SAME = [pair for pair in BALANCED if pair[2]] * 2
ONLY_DIFFERENT = [pair for pair in BALANCED if not pair[2]] * 2


def run_cli(capsys, *argv: str | Path) -> tuple[int, str, str]:
    """``(exit code, stdout, stderr)`` of ``marginface ARGV``; argparse exits become codes."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 2
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(err: str, *needles: str) -> str:
    """The single stderr line; asserts no traceback and that every needle is in it."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{err}"
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def write_small_pair_set(root: Path, pairs: list[tuple[str, str, bool]]) -> Path:
    """``root``/tiny.safetensors (a random 112x96 model), 4 images and ``root``/pairs.txt."""
    model = models.create_model("mobilefacenet", input_size=(112, 96), embedding_dim=16,
                                width=0.25)
    models.save_model(model.eval(), root / "tiny.safetensors")
    rng = np.random.default_rng(0)
    for person in range(2):
        for k in range(2):
            path = root / f"p{person}" / f"{k}.png"
            path.parent.mkdir(exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (112, 96, 3), dtype=np.uint8)).save(path)
    write_pairs_list(root / "pairs.txt", pairs)
    return root
