"""The one embedding loop: batches of faces through an engine, with the flip modes.

Flip (SphereFace / insightface test-time augmentation): the batch and its horizontal mirror go
through the model as one batch of 2N; ``"concat"`` joins the two embeddings (2D), ``"sum"`` adds
them (D), None uses the image alone. Embeddings are raw (not L2-normalised).

Every embedding path calls :func:`embed_batch`: image files (:func:`marginface.eval.embed.
compute_embeddings`), tensors in memory (:func:`embed_tensor`, the trainer's periodic
verification) and the :class:`Embedder` (the fast model of ``prepare_for_inference``). Pixel
tensors are normalised by :func:`marginface.preprocessing.normalize`, as everywhere else.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from marginface.models.prepare import prepare_for_inference
from marginface.preprocessing import Preprocessing, normalize, preprocessing_of

__all__ = ["FLIP_MODES", "Embedder", "embed_batch", "embed_tensor"]

FLIP_MODES = ("concat", "sum", None)
Forward = Callable[[Tensor], Tensor]


def _check_flip(flip: str | None) -> None:
    if flip not in FLIP_MODES:
        raise ValueError(f"flip must be one of {FLIP_MODES}, got {flip!r}")


def embed_batch(forward: Forward, images: Tensor, flip: str | None = None) -> Tensor:
    """Float32 embeddings of one preprocessed (N, 3, H, W) batch, with ``flip`` as above."""
    _check_flip(flip)
    if flip is None:
        return forward(images).float()
    both = forward(torch.cat([images, images.flip(3)])).float()
    first, mirrored = both[: len(images)], both[len(images) :]
    return torch.cat([first, mirrored], 1) if flip == "concat" else first + mirrored


def embed_tensor(
    forward: Forward,
    images: Tensor,
    *,
    preprocessing: Preprocessing | None = None,
    flip: str | None = None,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Embeddings (N, D) float32 on the CPU of (N, 3, H, W) faces, ``batch_size`` at a time.

    uint8 images are RGB pixels, moved to ``device`` and normalised with ``preprocessing``;
    float images are taken as already preprocessed.
    """
    _check_flip(flip)
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (N, 3, H, W), got {tuple(images.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not images.is_floating_point() and preprocessing is None:
        raise ValueError("preprocessing is required for uint8 pixel images")
    outputs = []
    for start in range(0, images.shape[0], batch_size):
        chunk = images[start : start + batch_size].to(device)
        if chunk.is_floating_point():
            chunk = chunk.float()
        else:
            chunk = normalize(chunk, preprocessing)  # type: ignore[arg-type]
        outputs.append(embed_batch(forward, chunk, flip).cpu())
    return torch.cat(outputs) if outputs else torch.zeros(0, 0)


class Embedder:
    """Embeds faces with :func:`prepare_for_inference`'s fast model (moved from
    ``marginface.models``, which keeps the name as an alias).

    ``embedder(images)`` takes (N, 3, H, W) float32 already normalised, runs it in chunks of
    ``batch_size`` and returns (N, D) float32; ``flip=True`` adds the embedding of the
    horizontally flipped image (insightface's test-time protocol, flip mode ``"sum"``).
    ``embed_pixels`` first normalises RGB pixel values in [0, 255] with the model's stored
    preprocessing.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        fold_bn: bool = True,
        channels_last: bool = True,
        bf16: bool = False,
        batch_size: int = 64,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.model = prepare_for_inference(
            model, fold_bn=fold_bn, channels_last=channels_last, bf16=bf16
        )
        self.config = getattr(model, "config", None)
        self.batch_size = batch_size

    @torch.inference_mode()
    def __call__(self, images: Tensor, *, flip: bool = False) -> Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape (N, 3, H, W), got {tuple(images.shape)}")
        if self.config is not None and tuple(images.shape[2:]) != tuple(self.config.input_size):
            raise ValueError(
                f"images are {tuple(images.shape[2:])} but the model expects "
                f"{tuple(self.config.input_size)}"
            )
        return embed_tensor(
            self.model,
            images.float(),
            flip="sum" if flip else None,
            batch_size=self.batch_size,
        )

    def embed_pixels(self, pixels: Tensor, *, flip: bool = False) -> Tensor:
        """Normalise (N, 3, H, W) RGB pixels in [0, 255] as the model's config says, embed."""
        if self.config is None:
            raise ValueError("embed_pixels needs a model with a config (create_model)")
        return self(normalize(pixels, preprocessing_of(self)), flip=flip)
