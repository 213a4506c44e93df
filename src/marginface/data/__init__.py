"""marginface.data: face image datasets, verification pair sets, alignment and transforms.

Training sets: ``ImageFolderDataset`` (ROOT/<identity>/<image>) and ``RecordDataset``
(insightface .rec/.idx, streamed, pure Python); ``pack_folder`` writes a .rec. Verification sets:
``load_pairs`` ("lfw:DIR", a .bin, or a pairs list) returning a ``PairSet``. Alignment: one face
``marginface.data.align``, folders and pair sets ``marginface.data.align_batch``. Transforms:
``TrainTransform``, ``Preprocessing`` (the one type of ``marginface.preprocessing``).
"""

from marginface.data.align import (
    TEMPLATES,
    NotAlignedError,
    align_face,
    center_crop,
    load_aligned,
    similarity_transform,
    template_points,
    template_size,
    warp_affine,
)
from marginface.data.align_batch import AlignReport, align_folder, align_pairs_to_bin
from marginface.data.binset import load_bin, read_bin, write_bin
from marginface.data.decoding import MIN_IMAGE_SIDE, BadImageError
from marginface.data.imagefolder import ImageFolderDataset, list_images
from marginface.data.lfw import (
    load_lfw,
    read_landmarks,
    read_lfw_pairs,
    read_lfw_people,
    write_landmarks,
)
from marginface.data.loading import load_pairs
from marginface.data.pairs import ImageItem, PairSet, load_pairs_list, write_pairs_list
from marginface.data.recfile import RecordDataset, pack_folder, read_idx
from marginface.data.recordio import RecordHeader, read_record, write_record
from marginface.data.transforms import Preprocessing, TrainTransform, decode_image, to_tensor

__all__ = [
    "MIN_IMAGE_SIDE",
    "TEMPLATES",
    "AlignReport",
    "BadImageError",
    "ImageFolderDataset",
    "ImageItem",
    "NotAlignedError",
    "PairSet",
    "Preprocessing",
    "RecordDataset",
    "RecordHeader",
    "TrainTransform",
    "align_face",
    "align_folder",
    "align_pairs_to_bin",
    "center_crop",
    "decode_image",
    "list_images",
    "load_aligned",
    "load_bin",
    "load_lfw",
    "load_pairs",
    "load_pairs_list",
    "pack_folder",
    "read_bin",
    "read_idx",
    "read_landmarks",
    "read_lfw_pairs",
    "read_lfw_people",
    "read_record",
    "similarity_transform",
    "template_points",
    "template_size",
    "to_tensor",
    "warp_affine",
    "write_bin",
    "write_landmarks",
    "write_pairs_list",
    "write_record",
]
