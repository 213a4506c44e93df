"""Deprecated alias of :mod:`marginface.models.prepare` (``Embedder``: :mod:`marginface.eval.
embedder`), named apart from the evaluation package; removed after the next release."""

from marginface.deprecation import moved_names

__all__: list[str] = []  # the moved names resolve lazily (and warn) through __getattr__

__getattr__ = moved_names(
    __name__,
    {
        "Embedder": "marginface.eval.embedder",
        "InferenceModel": "marginface.models.prepare",
        "fold_batchnorm": "marginface.models.prepare",
        "prepare_for_inference": "marginface.models.prepare",
    },
)
