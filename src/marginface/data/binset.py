"""insightface ``.bin`` verification sets: read and write.

A ``.bin`` (docs/data.md#verification-sets) is a pickle of ``(bins, issame_list)``: ``bins`` holds
2N encoded images (``bytes``, or uint8 numpy arrays of the encoded bytes in newer files), pair ``i``
is ``(bins[2i], bins[2i+1])`` and ``issame_list[i]`` its flag. Files written by Python 2 need
``encoding='bytes'``. The unpickler here only accepts numpy's array reconstruction, so a ``.bin``
cannot run arbitrary code.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from marginface.atomic import atomic_write
from marginface.data.pairs import ImageItem, PairSet

__all__ = ["read_bin", "write_bin", "load_bin"]

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("builtins", "bytes"),
    ("builtins", "bytearray"),
    ("__builtin__", "bytearray"),
    ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a .bin file")
        return super().find_class(module, name)


def _issame_flags(issame: object, path: Path) -> np.ndarray:
    """issame_list as bool (N,): each value a bool, or an integer 0 / 1; anything else (the
    string 'no', 0.5, None) is an error, never read as True."""
    if isinstance(issame, (str, bytes)) or not hasattr(issame, "__iter__"):
        raise ValueError(f"{path}: issame_list is {type(issame).__name__}, not a list of booleans")
    flags = []
    for index, value in enumerate(issame):  # type: ignore[union-attr]
        if isinstance(value, (bool, np.bool_)) or (
                isinstance(value, (int, np.integer)) and value in (0, 1)):
            flags.append(bool(value))
        else:
            raise ValueError(f"{path}: issame_list[{index}] is {value!r} "
                             f"({type(value).__name__}), not a boolean (True/False or 0/1)")
    return np.asarray(flags, dtype=bool)


def read_bin(path: str | Path) -> tuple[list[bytes], np.ndarray]:
    """``(encoded_images, issame)`` of a ``.bin``; images as ``bytes``, issame as bool (N,)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f".bin file {path} does not exist")
    data = path.read_bytes()
    try:
        try:
            loaded = _SafeUnpickler(io.BytesIO(data)).load()
        except UnicodeDecodeError:
            loaded = _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise ValueError(f"{path} is not a verification .bin pickle: {error}") from error
    if not (isinstance(loaded, (tuple, list)) and len(loaded) == 2):
        raise ValueError(f"{path}: expected a pickled (bins, issame_list), got {type(loaded)}")
    bins, issame = loaded
    if isinstance(bins, (str, bytes)) or not hasattr(bins, "__iter__"):
        raise ValueError(f"{path}: bins is {type(bins).__name__}, not a list of encoded images")
    images = []
    for index, item in enumerate(bins):
        if isinstance(item, np.ndarray):
            item = item.astype(np.uint8, copy=False).tobytes()
        elif isinstance(item, (bytearray, memoryview)):
            item = bytes(item)
        if not isinstance(item, bytes):
            raise ValueError(f"{path}: bins[{index}] is {type(item).__name__}, not encoded bytes")
        images.append(item)
    flags = _issame_flags(issame, path)
    if len(images) != 2 * len(flags):
        raise ValueError(f"{path}: {len(images)} images for {len(flags)} pairs (expected 2N)")
    return images, flags


def write_bin(path: str | Path, images: Sequence[bytes], issame: Sequence[bool]) -> None:
    """Write encoded images (2N, pair i = images 2i, 2i+1) and N flags as an insightface .bin."""
    images = [bytes(b) for b in images]
    flags = [bool(s) for s in issame]
    if len(images) != 2 * len(flags):
        raise ValueError(f"images has {len(images)} entries, expected 2 * {len(flags)}")
    with atomic_write(path) as handle:
        pickle.dump((images, flags), handle, protocol=4)


def load_bin(path: str | Path) -> PairSet:
    """A ``.bin`` as an (already aligned) PairSet; folds are left to the 10 contiguous splits."""
    images, flags = read_bin(path)
    name = Path(path).name
    items = [ImageItem(data, f"{name}[{i}]") for i, data in enumerate(images)]
    pairs = np.arange(len(images), dtype=np.int64).reshape(-1, 2)
    return PairSet(items, pairs, flags, name=name, aligned=True)
