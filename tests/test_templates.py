"""The one size -> template table."""

from __future__ import annotations

import numpy as np
import pytest

from marginface.models import create_model
from marginface.templates import TEMPLATES, template_for_size, template_points, template_size


def test_each_template_is_found_by_its_size():
    for name in TEMPLATES:
        assert template_for_size(template_size(name)) == name
    assert template_for_size((112, 96)) == "sphereface_112x96"
    assert template_for_size((112, 112)) == "arcface_112x112"
    assert template_for_size((128, 128)) is None
    shift = template_points("arcface_112x112") - template_points("sphereface_112x96")
    assert np.allclose(shift, [[8.0, 0.0]] * 5)
    with pytest.raises(ValueError, match="template must be one of"):
        template_size("nope")


@pytest.mark.parametrize("size", [(112, 96), (112, 112), (64, 64)])
def test_models_take_their_template_from_the_table(size):
    pre = create_model("iresnet18", input_size=size).config.preprocessing
    assert pre.alignment_template == template_for_size(size)
