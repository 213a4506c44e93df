"""A gallery: enrolled identities' templates, the model that made them, one file.

File layout (safetensors, written atomically through :mod:`marginface.atomic`): tensors
``embeddings`` (R, D) float32 L2-normalised rows and ``labels`` (R,) int64, the identity index of
each row; metadata key ``marginface.gallery`` holds JSON with ``format``, ``identities`` (names,
unique), ``mode`` (``"mean"``: one row per identity, the normalised mean of its normalised
embeddings; ``"all"``: one row per image), ``fingerprint`` (:func:`marginface.models.io.
model_fingerprint` of the model), ``model`` (its :class:`ModelConfig` with the preprocessing) and
``flip`` (the embedding flip mode). Searching with a model whose fingerprint differs is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

from marginface.atomic import atomic_write_bytes
from marginface.identify.search import SEARCH_DTYPES, SearchResult, exact_search, normalize_rows
from marginface.inputs import require_file
from marginface.models.io import model_fingerprint

__all__ = [
    "GALLERY_KEY",
    "GALLERY_FORMAT",
    "TEMPLATE_MODES",
    "Gallery",
    "load_gallery",
    "model_record",
]

GALLERY_KEY = "marginface.gallery"
GALLERY_FORMAT = 1
TEMPLATE_MODES = ("mean", "all")


def model_record(model: torch.nn.Module) -> dict[str, Any]:
    """The model's config as its model file stores it (name, sizes, preprocessing)."""
    config = getattr(model, "config", None)
    if hasattr(config, "to_dict"):
        return config.to_dict()
    return {"name": type(model).__name__, "input_size": list(getattr(config, "input_size", []))}


@dataclass
class Gallery:
    """Rows ``embeddings`` (R, D) float32 normalised; ``labels`` (R,) index ``identities``."""

    identities: list[str]
    embeddings: torch.Tensor
    labels: torch.Tensor
    fingerprint: str
    model: dict[str, Any]
    mode: str = "mean"
    flip: str | None = "concat"
    images: dict[str, int] = field(default_factory=dict)  # images enrolled per identity

    def __post_init__(self) -> None:
        if self.mode not in TEMPLATE_MODES:
            raise ValueError(f"mode must be one of {TEMPLATE_MODES}, got {self.mode!r}")
        if len(set(self.identities)) != len(self.identities):
            raise ValueError("gallery identity names must be unique")
        self.embeddings = torch.as_tensor(self.embeddings, dtype=torch.float32)
        self.labels = torch.as_tensor(self.labels, dtype=torch.int64)
        if self.embeddings.dim() != 2 or self.labels.shape != (self.embeddings.shape[0],):
            raise ValueError(
                f"gallery embeddings {tuple(self.embeddings.shape)} and labels "
                f"{tuple(self.labels.shape)} do not match"
            )
        n = len(self.identities)
        if self.labels.numel() and (int(self.labels.min()) < 0 or int(self.labels.max()) >= n):
            raise ValueError(f"gallery labels must index the {n} identities")

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def check_model(self, model: torch.nn.Module | str, what: str = "the model") -> None:
        """Raise unless ``model`` (or its fingerprint) is the one this gallery was enrolled
        with: the same tensors and, for a model, the same input size and preprocessing (the
        same weights saved with another mean/std would embed faces differently)."""
        fingerprint = model if isinstance(model, str) else model_fingerprint(model)
        if not isinstance(model, str):
            record = json.loads(json.dumps(model_record(model)))  # as stored: lists, not tuples
            for key in ("input_size", "preprocessing"):
                if key in self.model and record.get(key) != self.model[key]:
                    raise ValueError(
                        f"{what} has {key} {record.get(key)}, the gallery was enrolled with "
                        f"{self.model[key]}; enrol it again with this model file"
                    )
        if fingerprint != self.fingerprint:
            raise ValueError(
                f"{what} (fingerprint {fingerprint[:12]}...) is not the model this gallery was "
                f"enrolled with ({self.model.get('name', '?')}, fingerprint "
                f"{self.fingerprint[:12]}...); enrol the gallery again with this model"
            )

    def _check_compatible(self, other: Gallery) -> None:
        self.check_model(other.fingerprint, "the new identities' model")
        if (other.mode, other.flip) != (self.mode, self.flip):
            raise ValueError(
                f"cannot merge: gallery has mode={self.mode}, flip={self.flip}; the new "
                f"identities mode={other.mode}, flip={other.flip}"
            )

    def remove(self, name: str) -> Gallery:
        """A copy without identity ``name`` (an error if it is not enrolled)."""
        if name not in self.identities:
            raise ValueError(f"identity {name!r} is not in the gallery")
        index = self.identities.index(name)
        keep = self.labels != index
        labels = self.labels[keep]
        labels = labels - (labels > index).long()
        names = [n for n in self.identities if n != name]
        images = {n: c for n, c in self.images.items() if n != name}
        return Gallery(
            names, self.embeddings[keep], labels, self.fingerprint, self.model, self.mode,
            self.flip, images,
        )

    def add(self, other: Gallery, *, replace: bool = False) -> Gallery:
        """A copy with ``other``'s identities added; a name already enrolled is an error unless
        ``replace`` (its rows are then replaced)."""
        self._check_compatible(other)
        merged = self
        duplicates = [n for n in other.identities if n in self.identities]
        if duplicates and not replace:
            raise ValueError(
                f"identities already in the gallery: {', '.join(duplicates[:5])}"
                f"{' ...' if len(duplicates) > 5 else ''} ({len(duplicates)}); pass --replace "
                "to replace them"
            )
        for name in duplicates:
            merged = merged.remove(name)
        offset = len(merged.identities)
        return Gallery(
            merged.identities + list(other.identities),
            torch.cat([merged.embeddings, other.embeddings]),
            torch.cat([merged.labels, other.labels + offset]),
            self.fingerprint, self.model, self.mode, self.flip,
            {**merged.images, **other.images},
        )

    def save(self, path: str | Path) -> Path:
        """Write the gallery file atomically (never half a file)."""
        meta = {
            "format": GALLERY_FORMAT, "identities": self.identities, "mode": self.mode,
            "fingerprint": self.fingerprint, "model": self.model, "flip": self.flip,
            "images": self.images,
        }
        tensors = {"embeddings": self.embeddings.contiguous(), "labels": self.labels.contiguous()}
        data = safetensors_bytes(tensors, metadata={GALLERY_KEY: json.dumps(meta)})
        atomic_write_bytes(path, data)
        return Path(path)

    def search_matrix(self, dtype: str = "float32") -> torch.Tensor:
        """The rows in the searched dtype (``"float32"`` or ``"bfloat16"``)."""
        if dtype not in SEARCH_DTYPES:
            raise ValueError(f"dtype must be one of {sorted(SEARCH_DTYPES)}, got {dtype!r}")
        return self.embeddings.to(SEARCH_DTYPES[dtype])

    def search(
        self,
        probes: torch.Tensor | np.ndarray,
        k: int = 5,
        *,
        dtype: str = "float32",
        backend: str = "exact",
    ) -> tuple[list[list[str]], np.ndarray]:
        """The ``k`` best identities per probe (best row per identity) and their scores (M, k);
        fewer identities than ``k`` pad with ``""`` and -inf. ``backend``: ``"exact"``
        (:func:`exact_search` in ``dtype``) or a FAISS index kind (``"faiss-flat"``,
        ``"faiss-ivf"``, ``"faiss-hnsw"``; needs faiss-cpu)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        probes = normalize_rows(probes)
        m = probes.shape[0]
        names = np.full((m, k), "", dtype=object)
        scores = np.full((m, k), -np.inf, dtype=np.float32)
        if not self.identities or m == 0:
            return names.tolist(), scores
        per_identity = int(torch.bincount(self.labels).max())
        rows = min(self.embeddings.shape[0], k * per_identity)
        # k identities need at most k * (rows per identity) rows (each repeat hides one)
        if backend == "exact":
            found: SearchResult = exact_search(self.search_matrix(dtype), probes, rows)
        elif backend.startswith("faiss-"):
            from marginface.identify.faiss_index import build_faiss_index, faiss_search

            index = build_faiss_index(self.embeddings.numpy(), backend.removeprefix("faiss-"))
            found = faiss_search(index, probes.numpy(), rows)
        else:
            raise ValueError(f"backend must be 'exact' or 'faiss-<kind>', got {backend!r}")
        # a FAISS index marks missing hits with -1: give them score -inf
        found.scores[found.indices < 0] = -np.inf
        labels = self.labels.numpy()[np.maximum(found.indices, 0)]
        for p in range(m):
            seen: set[int] = set()
            for label, score in zip(labels[p], found.scores[p], strict=True):
                if label not in seen and len(seen) < k and np.isfinite(score):
                    names[p, len(seen)] = self.identities[label]
                    scores[p, len(seen)] = score
                    seen.add(label)
        return names.tolist(), scores


def load_gallery(path: str | Path) -> Gallery:
    """Read a gallery file; a missing, corrupt or foreign file is a clear error."""
    path = require_file(path, "gallery file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = (handle.metadata() or {}).get(GALLERY_KEY)
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as error:  # safetensors raises its own error types for damaged files
        raise ValueError(f"gallery file {path} is corrupt or not a gallery: {error}") from error
    if meta is None or set(tensors) != {"embeddings", "labels"}:
        raise ValueError(f"{path} is not a marginface gallery (no '{GALLERY_KEY}' metadata)")
    try:
        info = json.loads(meta)
        if info["format"] != GALLERY_FORMAT:
            raise ValueError(f"format {info['format']} (this version reads {GALLERY_FORMAT})")
        return Gallery(
            list(info["identities"]), tensors["embeddings"], tensors["labels"],
            info["fingerprint"], info["model"], info["mode"], info["flip"],
            dict(info.get("images", {})),
        )
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as error:
        raise ValueError(f"gallery file {path} is corrupt: {error}") from error
