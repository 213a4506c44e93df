"""Load a state dict trained elsewhere into a marginface model by structure.

Foreign checkpoints name their tensors their own way (``blocks.3.conv.4.running_mean``), but a
network that is the same architecture registers the same tensors in the same order with the
same shapes. :func:`import_state_dict` pairs the foreign tensors with the model's state-dict
entries in order (parameters and BN running statistics alike), checks every shape, and either
reports the mapping (``dry_run``) or copies the values. Nothing is dropped silently: a count
mismatch or the first shape mismatch raises ValueError naming the tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from marginface.inputs import require_file

__all__ = ["ImportRow", "ImportReport", "import_state_dict", "find_state_dict",
           "import_checkpoint_file"]

_COUNTER = "num_batches_tracked"


@dataclass(frozen=True)
class ImportRow:
    foreign_key: str
    model_key: str
    shape: tuple[int, ...]


@dataclass
class ImportReport:
    """The foreign -> model mapping; ``applied`` is False for a dry run.

    ``model_keys_kept`` lists model entries left at their values because the foreign dict has no
    counterpart: only BN ``num_batches_tracked`` counters, when the foreign dict has none at all
    (older checkpoints).
    """

    rows: list[ImportRow] = field(default_factory=list)
    model_keys_kept: list[str] = field(default_factory=list)
    applied: bool = False

    @property
    def num_tensors(self) -> int:
        return len(self.rows)

    @property
    def num_values(self) -> int:
        return sum(int(torch.Size(r.shape).numel()) for r in self.rows)

    def table(self) -> str:
        """A printable table: foreign key -> model key -> shape."""
        head = ("foreign key", "model key", "shape")
        lines = [(r.foreign_key, r.model_key, "x".join(map(str, r.shape)) or "scalar")
                 for r in self.rows]
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
        out += [fmt.format(*line) for line in lines]
        for key in self.model_keys_kept:
            out.append(f"(kept, no foreign counterpart) {key}")
        status = "applied" if self.applied else "dry run, nothing copied"
        out.append(f"{self.num_tensors} tensors, {self.num_values} values ({status})")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.table()


def _split(keys: list[str]) -> tuple[list[str], list[str]]:
    return [k for k in keys if not k.endswith(_COUNTER)], [k for k in keys if k.endswith(_COUNTER)]


def _pair(foreign: list[str], ours: list[str], what: str) -> list[tuple[str, str]]:
    if len(foreign) != len(ours):
        extra = foreign[len(ours)] if len(foreign) > len(ours) else ours[len(foreign)]
        side = "foreign" if len(foreign) > len(ours) else "model"
        raise ValueError(
            f"foreign state dict has {len(foreign)} {what} but the model has {len(ours)}; "
            f"first unmatched {side} tensor: {extra!r}"
        )
    return list(zip(foreign, ours, strict=True))


def import_state_dict(
    model: nn.Module,
    foreign_state_dict: Mapping[str, torch.Tensor],
    *,
    dry_run: bool = False,
) -> ImportReport:
    """Copy ``foreign_state_dict`` into ``model`` pairing tensors by order and shape.

    Raises ValueError naming the first foreign tensor whose shape does not fit its model
    counterpart, or the first unmatched tensor when the counts differ. With ``dry_run`` the model
    is left untouched and the report shows the mapping that would be applied.
    """
    for key, value in foreign_state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(
                f"foreign state dict entry {key!r} is a {type(value).__name__}, not a tensor"
            )
    own = model.state_dict()
    foreign_main, foreign_counters = _split(list(foreign_state_dict))
    own_main, own_counters = _split(list(own))
    pairs = _pair(foreign_main, own_main, "tensors (BN counters aside)")
    kept: list[str] = []
    if foreign_counters:
        pairs += _pair(foreign_counters, own_counters, f"{_COUNTER} counters")
    else:
        kept = own_counters

    report = ImportReport(model_keys_kept=kept)
    for foreign_key, model_key in pairs:
        source, target = foreign_state_dict[foreign_key], own[model_key]
        if source.shape != target.shape:
            raise ValueError(
                f"foreign tensor {foreign_key!r} of shape {tuple(source.shape)} does not fit "
                f"model tensor {model_key!r} of shape {tuple(target.shape)} "
                f"(pair {len(report.rows) + 1} of {len(pairs)})"
            )
        report.rows.append(ImportRow(foreign_key, model_key, tuple(source.shape)))
    if not dry_run:
        with torch.no_grad():
            for row in report.rows:
                own[row.model_key].copy_(foreign_state_dict[row.foreign_key])
        report.applied = True
    return report


_STATE_KEYS = ("state_dict", "net_state_dict", "model_state_dict", "model", "net")


def find_state_dict(checkpoint: Any, key: str | None = None) -> Mapping[str, torch.Tensor]:
    """The tensors of a loaded checkpoint: ``checkpoint[key]``, the checkpoint itself when all of
    its values are tensors, or the first of the usual wrapper keys (state_dict, net_state_dict,
    model_state_dict, model, net). ValueError listing the top-level keys otherwise."""
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"checkpoint is a {type(checkpoint).__name__}, not a mapping of tensors")
    if key is not None:
        if key not in checkpoint:
            raise ValueError(f"checkpoint has no key {key!r}; its keys: {sorted(checkpoint)[:20]}")
        return checkpoint[key]
    if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return checkpoint
    for name in _STATE_KEYS:
        if isinstance(checkpoint.get(name), Mapping):
            return checkpoint[name]
    raise ValueError(f"no state dict found in the checkpoint (keys {sorted(checkpoint)[:20]}); "
                     f"name it with --key")


def import_checkpoint_file(
    checkpoint: str | Path,
    model_name: str,
    input_size: tuple[int, int],
    out: str | Path | None,
    *,
    embedding_dim: int | None = None,
    key: str | None = None,
    dry_run: bool = False,
    preprocessing: Mapping[str, Any] | None = None,
) -> ImportReport:
    """A foreign checkpoint file -> a marginface model file, by :func:`import_state_dict`.

    The checkpoint is read with ``torch.load(weights_only=True)`` (tensors and plain containers
    only: no code runs). ``preprocessing`` overrides the model's stored preprocessing fields
    (``mean``, ``std``, ...). With ``dry_run`` only the report is made and nothing is written.
    """
    from marginface.models.io import save_model
    from marginface.models.registry import create_model

    path = require_file(checkpoint, "checkpoint")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle errors of many types
        raise ValueError(f"{path}: cannot be read as a tensors-only torch checkpoint: "
                         f"{error}") from None
    model = create_model(model_name, input_size=tuple(input_size), embedding_dim=embedding_dim)
    report = import_state_dict(model, find_state_dict(loaded, key), dry_run=dry_run)
    if not dry_run:
        if out is None:
            raise ValueError("an output model file (-o) is required unless --dry-run")
        save_model(model, out, **dict(preprocessing or {}))
    return report
