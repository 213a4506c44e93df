"""Real face data for training: image folders, ``.rec`` files and the LFW protocol.

Readers, alignment and pair sets come from ``marginface.data``; this module shapes them for the
trainer: every item becomes ``(uint8 (3, H, W) RGB at the model's input size, label)`` (the
engine flips and scales batches), identity folders can be selected or held out, and verification
pairs can be drawn from held-out identity folders.

Crops: an image already at the input size is used as it is; otherwise it is aligned from its
5-point landmarks when they are known (LFW), else centre-cropped to the input's aspect and resized
(``marginface.data.align.center_crop``; the ORL recipe).

Unreadable images: without ``data.skip_unreadable`` every file (or .rec record: header and image)
is checked (``PIL verify``) before training and the first bad one is an error naming it; with it,
bad files or records are left out and counted in ``dataset.skipped`` (reported in summary.json).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from marginface.inputs import require_dir
from marginface.templates import template_for_size
from marginface.train.config import DataConfig, EvalSetConfig

__all__ = ["FaceCrop", "IdentitySubset", "LFWPeopleDataset", "folder_pairs", "stratified_folds",
           "check_readable", "build_real_dataset", "build_real_pair_set"]

class FaceCrop:
    """PIL image -> uint8 (3, H, W): as is at the input size, else aligned or centre-cropped."""

    def __init__(self, input_size: tuple[int, int]) -> None:
        self.size = (int(input_size[0]), int(input_size[1]))

    def __call__(self, image: Image.Image, landmarks: np.ndarray | None = None) -> torch.Tensor:
        from marginface.data.align import align_face, center_crop
        from marginface.data.decoding import to_rgb

        image = to_rgb(image)
        if landmarks is not None:
            template = template_for_size(self.size)
            if template is None:
                raise ValueError(f"model.input_size={self.size}: alignment from landmarks needs "
                                 f"(112, 96) or (112, 112)")
            image = align_face(image, landmarks, template)
        elif image.size != (self.size[1], self.size[0]):
            image = center_crop(image, self.size)
        return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)


def check_readable(paths: list[Path]) -> None:
    """Raise ValueError naming the first file Pillow cannot verify (header and structure)."""
    bad = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image.verify()
        except Exception as error:  # Pillow raises many types for a broken file
            bad.append((path, error))
    if bad:
        path, error = bad[0]
        raise ValueError(f"{len(bad)} unreadable image(s), first {path}: {error} "
                         f"(set data.skip_unreadable=true to skip and count them)")


class _LabelledItems(Dataset):
    """A dataset over ``self.items`` of (source, label) with ``self.classes`` names."""

    items: list[tuple[Any, int]]
    classes: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def labels(self) -> list[int]:
        return [label for _, label in self.items]

    def __len__(self) -> int:
        return len(self.items)


class IdentitySubset(_LabelledItems):
    """Only the images of the named identities of a folder dataset, relabelled 0..K-1."""

    def __init__(self, dataset: Any, names: list[str]) -> None:
        index = {name: i for i, name in enumerate(dataset.classes)}
        unknown = [n for n in names if n not in index]
        if unknown:
            raise ValueError(f"data.identities: {unknown[:3]} are not folders of "
                             f"{getattr(dataset, 'root', 'the dataset')}")
        keep = {index[n]: new for new, n in enumerate(names)}
        self.dataset = dataset
        self.classes = list(names)
        self.items = [(i, keep[label]) for i, label in enumerate(dataset.labels) if label in keep]
        self.skipped = getattr(dataset, "skipped", [])

    def __getitem__(self, index: int):
        source, label = self.items[index]
        return self.dataset[source][0], label


class LFWPeopleDataset(_LabelledItems):
    """LFW "unrestricted, no outside data": the people of every fold of people.txt but one,
    aligned from lfw_landmark.txt; label = the person's index among the kept people."""

    def __init__(self, root: str | Path, *, exclude_fold: int, input_size: tuple[int, int],
                 people_file: str | Path | None = None,
                 validation_folds: list[int] | tuple[int, ...] = ()) -> None:
        from marginface.data.lfw import lfw_image_path, read_landmarks, read_lfw_people

        self.root = Path(root)
        folds = read_lfw_people(people_file or self.root / "people.txt")
        if not 1 <= exclude_fold <= len(folds):
            raise ValueError(f"data.exclude_fold must be in 1..{len(folds)}, got {exclude_fold}")
        bad = [f for f in validation_folds if not 1 <= f <= len(folds)]
        if bad:
            raise ValueError(f"data.validation_folds must be in 1..{len(folds)}, got {bad}")
        held_out = {exclude_fold, *validation_folds}
        people = sorted({name: n for i, fold in enumerate(folds, 1) if i not in held_out
                         for name, n in fold}.items())
        landmark_path = self.root / "lfw_landmark.txt"
        self.landmarks = read_landmarks(landmark_path) if landmark_path.is_file() else {}
        self.classes = [name for name, _ in people]
        self.items: list[tuple[str, int]] = [
            (lfw_image_path(name, k), label)
            for label, (name, count) in enumerate(people) for k in range(1, count + 1)
        ]
        missing = [p for p, _ in self.items if not (self.root / "images" / p).is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} LFW image(s) listed in people.txt are "
                                    f"missing, first {self.root / 'images' / missing[0]}")
        self.crop = FaceCrop(input_size)
        # images without landmarks are centre-cropped: counted, printed at the start of a run
        # and written to summary.json (center_cropped_images)
        self.centre_cropped = sum(1 for p, _ in self.items if p not in self.landmarks)

    def __getitem__(self, index: int):
        path, label = self.items[index]
        from marginface.data.decoding import decode_image

        image = decode_image(self.root / "images" / path, name=path)
        return self.crop(image, self.landmarks.get(path)), label


def build_real_dataset(config: DataConfig, input_size: tuple[int, int]) -> Dataset:
    """The folder / rec / lfw training set, identities with fewer than
    ``data.min_images_per_identity`` images left out (``dataset.dropped`` says how many)."""
    from marginface.train.identity_filter import min_images_filter

    return min_images_filter(_build_real_dataset(config, input_size),
                             config.min_images_per_identity)


def _build_real_dataset(config: DataConfig, input_size: tuple[int, int]) -> Dataset:
    from marginface.data import ImageFolderDataset, RecordDataset

    path = Path(config.path)
    crop = FaceCrop(input_size)
    if config.kind == "lfw":
        if config.exclude_fold is None:
            raise ValueError("data.exclude_fold (1..10) is required for data.kind='lfw'")
        return LFWPeopleDataset(path, exclude_fold=config.exclude_fold, input_size=input_size,
                                people_file=config.people_file,
                                validation_folds=config.validation_folds)
    if config.kind == "rec":
        # every record header is checked at open and every image decode-checked here, so a
        # corrupt record stops the run now (or is skipped and counted), not at a later step
        records = RecordDataset(path, transform=crop, skip_unreadable=config.skip_unreadable)
        records.check_images()
        return records
    require_dir(path, "data.path: image folder")
    dataset = ImageFolderDataset(path, transform=crop, skip_undecodable=config.skip_unreadable)
    names = [n for n in (config.identities or dataset.classes)
             if n not in set(config.exclude_identities)]
    if not config.skip_unreadable:
        keep = set(names)
        check_readable([p for p, label in dataset.samples if dataset.classes[label] in keep])
    if names != dataset.classes:
        return IdentitySubset(dataset, names)
    return dataset


def folder_pairs(root: str | Path, identities: list[str] | None, num_pairs: int, *,
                 seed: int = 0, name: str = "folder") -> Any:
    """A ``PairSet`` of ``num_pairs`` pairs (half same, half different identity) drawn with
    ``seed`` from the images of ``identities`` (default: all) under ``root``."""
    from marginface.data import ImageItem, PairSet, list_images

    root = Path(root)
    names = identities or sorted(p.name for p in root.iterdir() if p.is_dir())
    files = {n: list_images(root / n) for n in names}
    usable = [n for n in names if len(files[n]) >= 2]
    if len(usable) < 2:
        raise ValueError(f"{root}: pairs need at least 2 identities with 2+ images each")
    images, pairs, issame = [], [], []
    offsets = {}
    for n in names:
        offsets[n] = len(images)
        images += [ImageItem(p, f"{n}/{p.name}") for p in files[n]]
    rng = np.random.default_rng(seed)
    for i in range(num_pairs):
        if i % 2 == 0:
            n = usable[rng.integers(len(usable))]
            a, b = rng.choice(len(files[n]), 2, replace=False)
            pairs.append((offsets[n] + a, offsets[n] + b))
        else:
            n1, n2 = rng.choice(len(usable), 2, replace=False)
            n1, n2 = usable[n1], usable[n2]
            pairs.append((offsets[n1] + rng.integers(len(files[n1])),
                          offsets[n2] + rng.integers(len(files[n2]))))
        issame.append(i % 2 == 0)
    return PairSet(images=images, pairs=np.array(pairs), issame=np.array(issame), name=name)


def stratified_folds(issame: np.ndarray, n_folds: int) -> np.ndarray:
    """Fold id per pair: the same-identity pairs in ``n_folds`` contiguous runs, the different
    ones likewise, so every fold has both kinds (LFW lists a fold's 300 same pairs first: plain
    contiguous runs of one fold's pairs would each hold one kind only)."""
    from marginface.eval.verification import contiguous_folds

    issame = np.asarray(issame, dtype=bool)
    folds = np.empty(issame.size, dtype=np.int64)
    for kind in (True, False):
        where = np.flatnonzero(issame == kind)
        folds[where] = contiguous_folds(where.size, n_folds)
    return folds


def build_real_pair_set(item: EvalSetConfig, input_size: tuple[int, int], *, where: str,
                        n_folds: int = 10) -> Any:
    from marginface.data import load_pairs

    if item.kind == "folder":
        pair_set = folder_pairs(item.path, item.identities, item.num_pairs, name=item.name)
    else:
        spec = f"lfw:{item.path}" if item.kind == "lfw" else item.path
        pair_set = load_pairs(spec, skip_bad_images=item.skip_bad_images)
        pair_set.name = item.name
    if item.folds is not None:
        if pair_set.folds is None:
            raise ValueError(f"{where}.folds: {item.path} defines no folds")
        keep = np.isin(pair_set.folds, np.asarray(item.folds) - 1)  # folds are 1-based here
        if not keep.any():
            raise ValueError(f"{where}.folds={item.folds}: no pairs in those folds")
        pair_set = pair_set.subset(keep)
        # the held-out pairs are split again into n_folds folds, each with same and different
        # pairs, for the k-fold accuracy inside them
        pair_set.folds = stratified_folds(pair_set.issame, n_folds)
        pair_set.skipped = 0  # pairs of other folds are not skipped, just not part of the test
    pair_set.skip_bad = item.skip_bad_images
    return pair_set
