"""Face embeddings of a set of image files: decode + align + normalise (DataLoader workers), then
the one embedding loop (:func:`marginface.eval.embedder.embed_batch`: engines, flip modes).

Embeddings are returned raw (not normalised); cosine similarity normalises.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from marginface.data.align import TEMPLATES, NotAlignedError, load_aligned, template_size
from marginface.data.decoding import BadImageError
from marginface.data.pairs import ImageItem
from marginface.data.transforms import DECODE_ERRORS, to_tensor
from marginface.eval.embedder import FLIP_MODES, embed_batch
from marginface.eval.engines import make_forward
from marginface.preprocessing import Preprocessing, preprocessing_of
from marginface.templates import template_for_size

__all__ = ["FaceImages", "EmbeddingResult", "NonFiniteEmbeddingError", "check_finite_embeddings",
           "model_preprocessing", "compute_embeddings"]

METHODS = ("landmarks", "template", "center")
_NOT_ALIGNED = -2  # FaceImages' code for an image that may not be centre-cropped


class NonFiniteEmbeddingError(ValueError):
    """An embedding or score that is NaN or infinite (bad weights, or a broken input): no
    decision is made from it; the message names the image."""


def check_finite_embeddings(embeddings: Any, names: Sequence[str],
                            skip: Any = ()) -> None:
    """:class:`NonFiniteEmbeddingError` naming the first image whose row is NaN or infinite
    (rows in ``skip``, e.g. failed images, are not checked)."""
    rows = np.asarray(embeddings)
    if rows.ndim != 2 or not rows.size:
        return
    bad = ~np.isfinite(rows).all(axis=1)
    bad[list(skip)] = False
    if bad.any():
        first = names[int(np.flatnonzero(bad)[0])]
        raise NonFiniteEmbeddingError(
            f"{int(bad.sum())} embedding(s) are NaN or infinite, first of image {first}: the "
            f"model's weights or its input are broken; nothing is decided from them")


def model_preprocessing(model: Any) -> tuple[Preprocessing, str, tuple[int, int]]:
    """``(preprocessing, template, (H, W))`` stored in ``model.config``; checks they agree."""
    preprocessing = preprocessing_of(model)
    size = (int(model.config.input_size[0]), int(model.config.input_size[1]))
    template = preprocessing.alignment_template or template_for_size(size)
    if template is None:
        raise ValueError(
            f"model input_size {size} has no alignment template: faces cannot be aligned "
            f"for it (templates: {', '.join(f'{k} {v[1]}' for k, v in TEMPLATES.items())})"
        )
    if template_size(template) != size:
        raise ValueError(
            f"model input_size {size} does not match its alignment template "
            f"{template!r} ({template_size(template)})"
        )
    return preprocessing, template, size


class FaceImages(Dataset):
    """Aligned, scaled face tensors of ``ImageItem``s (or paths): ``(tensor, index, method, err)``.

    A decode error is returned, not raised, so that the caller can name the image or skip it and
    count it (``method`` is -1 then and ``err`` the message). Without ``center_crop`` an image
    that is neither an aligned crop nor given landmarks is returned with ``method`` -2 (the
    caller raises :class:`~marginface.data.align.NotAlignedError`).
    """

    def __init__(
        self,
        items: Sequence[ImageItem | str | Path],
        preprocessing: Preprocessing,
        template: str,
        *,
        center_crop: bool = True,
    ) -> None:
        self.items = [i if isinstance(i, ImageItem) else ImageItem(Path(i), str(i)) for i in items]
        self.preprocessing = preprocessing
        self.template = template
        self.size = template_size(template)
        self.center_crop = center_crop

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, str]:
        item = self.items[index]
        empty = torch.zeros(3, *self.size)
        try:
            image, method = load_aligned(item.source, self.template, item.landmarks,
                                         allow_center_crop=self.center_crop, name=item.name)
        except NotAlignedError as error:
            return empty, index, _NOT_ALIGNED, str(error)
        except (*DECODE_ERRORS, FileNotFoundError) as error:
            return empty, index, -1, f"{type(error).__name__}: {error}"
        return to_tensor(image, self.preprocessing), index, METHODS.index(method), ""


@dataclass
class EmbeddingResult:
    """``embeddings`` (N, D) float32 (rows of failed images are 0), per-image status:
    ``failed`` (index -> error), ``methods`` (images per alignment method) and
    ``landmarks_ignored`` (names of aligned crops whose landmarks were not used)."""

    embeddings: np.ndarray
    failed: dict[int, str] = field(default_factory=dict)
    methods: dict[str, int] = field(default_factory=dict)
    landmarks_ignored: list[str] = field(default_factory=list)


def compute_embeddings(
    model: torch.nn.Module,
    items: Sequence[ImageItem | str | Path],
    *,
    flip: str | None = "concat",
    batch_size: int = 64,
    num_workers: int = 2,
    progress: bool = True,
    skip_bad_images: bool = False,
    desc: str = "align+embed",
    engine: str = "torch",
    center_crop: bool = False,
    skip_hint: bool = True,
) -> EmbeddingResult:
    """Embed every item: aligned from its landmarks, or taken as an aligned crop (an image of a
    template's size; landmarks given for it are ignored, with a warning).

    Any other image is a :class:`~marginface.data.align.NotAlignedError` naming it (whatever
    ``skip_bad_images`` says: it is a missing option, not a bad file), unless ``center_crop``:
    then it is centre-cropped and counted in ``methods["center"]``. Unreadable images and images
    below :data:`~marginface.data.decoding.MIN_IMAGE_SIDE` pixels are an error naming them, or
    with ``skip_bad_images`` zero rows listed in ``failed``. ``engine`` picks the inference path
    (``marginface.eval.engines``: eager, torch, bf16, onnxruntime); ``num_workers`` DataLoader
    processes decode and align. ``skip_hint``: the error names ``skip_bad_images`` (False for a
    caller that has no such option).
    """
    if flip not in FLIP_MODES:
        raise ValueError(f"flip must be one of {FLIP_MODES}, got {flip!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    preprocessing, template, size = model_preprocessing(model)
    dataset = FaceImages(items, preprocessing, template, center_crop=center_crop)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
    )
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    was_training = model.training
    model.eval()
    forward = make_forward(model, engine, input_size=size)
    chunks: list[np.ndarray] = []
    failed: dict[int, str] = {}
    methods = dict.fromkeys(METHODS, 0)
    ignored: list[str] = []
    try:
        with torch.inference_mode():
            for images, indices, codes, errors in tqdm(
                loader, desc=desc, unit="batch", disable=not progress, leave=False
            ):
                for index, code, error in zip(
                    indices.tolist(), codes.tolist(), errors, strict=True
                ):
                    if code == _NOT_ALIGNED:
                        raise NotAlignedError(error)
                    if code < 0:
                        if not skip_bad_images:
                            hint = ("; pass skip_bad_images / --skip-bad-images to skip and "
                                    "count such images") if skip_hint else ""
                            raise BadImageError(
                                f"cannot read image {dataset.items[index].name}: {error}{hint}")
                        failed[index] = error
                    else:
                        methods[METHODS[code]] += 1
                        if METHODS[code] == "template" and \
                                dataset.items[index].landmarks is not None:
                            ignored.append(dataset.items[index].name)
                out = embed_batch(forward, images.to(device), flip)
                chunks.append(out.cpu().numpy())
    finally:
        model.train(was_training)
    embeddings = np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)
    for index in failed:
        embeddings[index] = 0.0
    if ignored:
        warnings.warn(f"{len(ignored)} image(s) already at an aligned crop's size: their "
                      f"landmarks were ignored (first {ignored[0]})", UserWarning, stacklevel=2)
    return EmbeddingResult(embeddings, failed, methods, ignored)
