"""marginface.eval: face verification evaluation (10-fold protocol, ROC, EER, TAR@FAR),
identification metrics (CMC, TPIR at FPIR, DET; ``marginface.eval.identification``, with the
LFW 1:N run in ``identification_run`` and the IJB-B/C protocols in ``marginface.eval.ijb``) and
the one embedding path (batching, flip modes, engines) that training and the ``Embedder`` share."""

from marginface.eval.embed import EmbeddingResult, FaceImages, compute_embeddings
from marginface.eval.embedder import FLIP_MODES, Embedder, embed_batch, embed_tensor
from marginface.eval.engines import ENGINES, make_forward
from marginface.eval.evaluate import PairSetEvaluation, evaluate_model, pair_scores
from marginface.eval.identification import (
    IdentificationReport,
    cmc_curve,
    det_curve,
    identification_report,
    threshold_at_fpir,
    tpir_at_fpir,
)
from marginface.eval.images import (
    NonFiniteEmbeddingError,
    VerifyResult,
    embed_folder,
    verify_images,
)
from marginface.eval.roc import (
    best_accuracy_threshold,
    equal_error_rate,
    roc_auc,
    roc_curve,
    tar_at_far,
    threshold_at_far,
)
from marginface.eval.verification import VerificationReport, contiguous_folds, verify_scores

__all__ = [
    "ENGINES",
    "FLIP_MODES",
    "Embedder",
    "EmbeddingResult",
    "FaceImages",
    "IdentificationReport",
    "NonFiniteEmbeddingError",
    "PairSetEvaluation",
    "VerificationReport",
    "VerifyResult",
    "best_accuracy_threshold",
    "cmc_curve",
    "compute_embeddings",
    "contiguous_folds",
    "det_curve",
    "embed_batch",
    "embed_folder",
    "embed_tensor",
    "equal_error_rate",
    "evaluate_model",
    "identification_report",
    "make_forward",
    "pair_scores",
    "roc_auc",
    "roc_curve",
    "tar_at_far",
    "threshold_at_far",
    "threshold_at_fpir",
    "tpir_at_fpir",
    "verify_images",
    "verify_scores",
]
