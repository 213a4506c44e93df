"""``marginface enroll``'s library side: create a gallery file, or add / remove identities in
place. Every write replaces the file atomically (the old gallery stays intact on failure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marginface.eval.model_report import load_model_file
from marginface.identify.enroll import enroll_folder
from marginface.identify.gallery import Gallery, load_gallery

__all__ = ["GalleryUpdate", "update_gallery"]


@dataclass
class GalleryUpdate:
    """What one ``enroll`` run did to the gallery file ``path``."""

    path: Path
    identities: int
    rows: int
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def update_gallery(
    path: str | Path,
    *,
    folder: str | Path | None = None,
    model_file: str | Path | None = None,
    create: bool = True,
    remove: tuple[str, ...] = (),
    replace: bool = False,
    mode: str = "mean",
    flip: str | None = "concat",
    **embedding: Any,
) -> GalleryUpdate:
    """Enrol ``folder`` (one sub-folder per identity) with ``model_file`` into gallery ``path``.

    ``create``: write a new gallery (an existing file is replaced); otherwise the identities are
    added to the existing gallery (names already there are an error unless ``replace``), which
    must have been enrolled with the same model, template mode and flip. ``remove`` names are
    removed first. ``embedding`` (landmarks_file, batch_size, num_workers, progress, engine) goes
    to :func:`enroll_folder`. Nothing is written unless every step succeeds.
    """
    path = Path(path)
    if folder is None and not remove:
        raise ValueError("nothing to do: give an identity folder to enrol and/or --remove NAME")
    gallery: Gallery | None = None if create else load_gallery(path)
    removed = []
    for name in remove:
        if gallery is None:
            raise ValueError("--remove needs an existing gallery (--gallery G)")
        gallery = gallery.remove(name)
        removed.append(name)
    empty: list[str] = []
    failed: dict[str, str] = {}
    added: list[str] = []
    if folder is not None:
        if model_file is None:
            raise ValueError("enrolling a folder needs --model")
        model = load_model_file(model_file)
        if gallery is not None:  # refuse before the (long) embedding, not after
            gallery.check_model(model, f"model {model_file}")
            if gallery.mode != mode or gallery.flip != flip:
                raise ValueError(
                    f"gallery {path} has template mode {gallery.mode} and flip {gallery.flip}; "
                    f"this run asks for {mode} and {flip}"
                )
        result = enroll_folder(model, folder, mode=mode, flip=flip, **embedding)
        empty, failed, added = result.empty, result.failed, result.gallery.identities
        new = result.gallery
        gallery = new if gallery is None else gallery.add(new, replace=replace)
    assert gallery is not None
    gallery.save(path)
    return GalleryUpdate(
        path, len(gallery.identities), int(gallery.embeddings.shape[0]), added, removed, empty,
        failed,
    )
