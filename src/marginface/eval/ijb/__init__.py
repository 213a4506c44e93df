"""IJB-B / IJB-C template protocols: meta-data readers, template pooling, 1:1 and 1:N metrics,
and the run over a real download (docs/evaluation.md)."""

from marginface.eval.ijb.meta import (
    FaceList,
    read_1n_templates,
    read_face_tid_mid,
    read_landmarks_scores,
    read_template_pairs,
)
from marginface.eval.ijb.metrics import (
    IJB_FARS,
    ijb_identification,
    tar_at_far_interpolated,
    tar_at_far_nearest,
)
from marginface.eval.ijb.pooling import NORM_MODES, image_features, template_features

__all__ = [
    "IJB_FARS",
    "NORM_MODES",
    "FaceList",
    "ijb_identification",
    "image_features",
    "read_1n_templates",
    "read_face_tid_mid",
    "read_landmarks_scores",
    "read_template_pairs",
    "tar_at_far_interpolated",
    "tar_at_far_nearest",
    "template_features",
]
