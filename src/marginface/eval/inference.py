"""Deprecated alias of :mod:`marginface.eval.images`, named apart from
:mod:`marginface.models.prepare`; removed after the next release."""

from marginface.deprecation import moved_names

__all__: list[str] = []  # the moved names resolve lazily (and warn) through __getattr__

__getattr__ = moved_names(
    __name__,
    dict.fromkeys(["VerifyResult", "embed_folder", "verify_images"], "marginface.eval.images"),
)
