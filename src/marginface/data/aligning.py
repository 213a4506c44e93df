"""Deprecated alias of :mod:`marginface.data.align_batch` (batch alignment), named apart from
:mod:`marginface.data.align` (one face); removed after the next release."""

from marginface.deprecation import moved_names

__all__: list[str] = []  # the moved names resolve lazily (and warn) through __getattr__

__getattr__ = moved_names(
    __name__,
    dict.fromkeys(
        ["AlignReport", "align_folder", "align_pairs_to_bin"], "marginface.data.align_batch"
    ),
)
