"""Classifier heads: plain softmax and the margin-softmax family, as ``nn.Module``s.

Every head owns ``weight`` (num_classes, embedding_dim), returns logits from
``forward(embeddings, labels=None)`` (margin only in training mode with labels) and gives the mean
cross-entropy from ``loss(embeddings, labels)`` (the binary heads, SphereFace2 and UniFace: their
one-vs-all loss). Heads are registered by name
(``create_head``, ``list_heads``). See docs/heads.md.
"""

from marginface.heads.adaface import AdaFace
from marginface.heads.base import MATMUL_DTYPES, Head
from marginface.heads.binary import BinaryHead
from marginface.heads.curricular import CurricularFace
from marginface.heads.elastic import (
    ElasticArcFace,
    ElasticArcFacePlus,
    ElasticCosFace,
    ElasticCosFacePlus,
)
from marginface.heads.fused import (
    BatchStats,
    LogitSpec,
    RowFunction,
    fused_cross_entropy,
    fused_margin_cross_entropy,
    fused_softmax_cross_entropy,
    fused_sphereface_cross_entropy,
    release_gradient_memory,
)
from marginface.heads.magface import MagFace
from marginface.heads.margin import (
    AMSoftmax,
    ArcFace,
    CombinedMargin,
    CosFace,
    MarginHead,
    NormFace,
)
from marginface.heads.precision_matmul import precision_linear
from marginface.heads.registry import (
    create_head,
    get_head_class,
    head_options,
    list_heads,
    register_head,
)
from marginface.heads.softmax import Softmax
from marginface.heads.sphereface import SphereFace
from marginface.heads.sphereface2 import SphereFace2
from marginface.heads.subcenter import SubCenterArcFace, SubCenterCleaning, subcenter_cleaning
from marginface.heads.uniface import UniFace

__all__ = [
    "Head",
    "MarginHead",
    "MATMUL_DTYPES",
    "Softmax",
    "NormFace",
    "CosFace",
    "AMSoftmax",
    "ArcFace",
    "CombinedMargin",
    "SphereFace",
    "CurricularFace",
    "AdaFace",
    "MagFace",
    "ElasticArcFace",
    "ElasticCosFace",
    "ElasticArcFacePlus",
    "ElasticCosFacePlus",
    "SubCenterArcFace",
    "BinaryHead",
    "SphereFace2",
    "UniFace",
    "SubCenterCleaning",
    "subcenter_cleaning",
    "LogitSpec",
    "RowFunction",
    "BatchStats",
    "register_head",
    "get_head_class",
    "create_head",
    "list_heads",
    "head_options",
    "fused_cross_entropy",
    "fused_margin_cross_entropy",
    "fused_sphereface_cross_entropy",
    "fused_softmax_cross_entropy",
    "precision_linear",
    "release_gradient_memory",
]
