"""Moved names keep their old import paths for one release, with a DeprecationWarning."""

from __future__ import annotations

import importlib

import pytest

from marginface.deprecation import moved_names

OLD_PATHS = [
    ("marginface.data.aligning", "align_folder", "marginface.data.align_batch"),
    ("marginface.data.aligning", "AlignReport", "marginface.data.align_batch"),
    ("marginface.eval.inference", "embed_folder", "marginface.eval.images"),
    ("marginface.eval.inference", "verify_images", "marginface.eval.images"),
    ("marginface.models.inference", "fold_batchnorm", "marginface.models.prepare"),
    ("marginface.models.inference", "Embedder", "marginface.eval.embedder"),
    ("marginface.models", "Embedder", "marginface.eval.embedder"),
]


@pytest.mark.parametrize(("old", "name", "new"), OLD_PATHS)
def test_old_path_resolves_to_the_new_object(old, name, new):
    with pytest.warns(DeprecationWarning, match=new):
        value = getattr(importlib.import_module(old), name)
    assert value is getattr(importlib.import_module(new), name)


def test_unknown_names_are_attribute_errors():
    getattr_ = moved_names("pkg.old", {"thing": "marginface.templates"})
    with pytest.raises(AttributeError, match="has no attribute 'other'"):
        getattr_("other")
    with pytest.raises(AttributeError):
        importlib.import_module("marginface.data.aligning").nothing  # noqa: B018
