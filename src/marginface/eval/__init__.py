"""marginface.eval: face verification evaluation (10-fold protocol, ROC, EER, TAR@FAR)."""

from marginface.eval.embed import EmbeddingResult, FaceImages, compute_embeddings
from marginface.eval.evaluate import PairSetEvaluation, evaluate_model, pair_scores
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
    "EmbeddingResult",
    "FaceImages",
    "PairSetEvaluation",
    "VerificationReport",
    "best_accuracy_threshold",
    "compute_embeddings",
    "contiguous_folds",
    "equal_error_rate",
    "evaluate_model",
    "pair_scores",
    "roc_auc",
    "roc_curve",
    "tar_at_far",
    "threshold_at_far",
    "verify_scores",
]
