"""Old import paths of renamed modules stay importable (one release), giving the same objects."""

from __future__ import annotations

import importlib

import pytest

ALIASES = [
    ("marginface.caffe.layers", "marginface.caffe.margin_layers"),
    ("marginface.caffe.netlayers", "marginface.caffe.layer_types"),
    ("marginface.eval.run", "marginface.eval.model_report"),
    ("marginface.train.run", "marginface.train.launch"),
    ("marginface.train.typed", "marginface.typed"),
]


@pytest.mark.parametrize("old,new", ALIASES)
def test_old_path_reexports_the_new_objects(old, new):
    old_module, new_module = importlib.import_module(old), importlib.import_module(new)
    assert old_module.__all__
    for name in old_module.__all__:
        assert getattr(old_module, name) is getattr(new_module, name), name
