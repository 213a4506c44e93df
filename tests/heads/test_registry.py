"""The heads registry: names, creation, user registration, and the trainer reading it."""

from __future__ import annotations

import pytest
import torch
from heads_cases import single_thread  # noqa: F401  (autouse fixture)

from marginface.heads import (
    AdaFace,
    AMSoftmax,
    ArcFace,
    CombinedMargin,
    CosFace,
    CurricularFace,
    ElasticArcFace,
    ElasticArcFacePlus,
    ElasticCosFace,
    ElasticCosFacePlus,
    Head,
    MagFace,
    NormFace,
    Softmax,
    SphereFace,
    SphereFace2,
    SubCenterArcFace,
    UniFace,
    create_head,
    get_head_class,
    head_options,
    list_heads,
    register_head,
    registry,
)
from marginface.train.builders import build_head
from marginface.train.config import HeadConfig, config_from_dict

BUILTIN = {"softmax": Softmax, "normface": NormFace, "cosface": CosFace, "amsoftmax": AMSoftmax,
           "arcface": ArcFace, "combined": CombinedMargin, "sphereface": SphereFace,
           "curricularface": CurricularFace, "adaface": AdaFace, "magface": MagFace,
           "elasticface_arc": ElasticArcFace, "elasticface_cos": ElasticCosFace,
           "elasticface_arc_plus": ElasticArcFacePlus, "elasticface_cos_plus": ElasticCosFacePlus,
           "subcenter_arcface": SubCenterArcFace, "sphereface2": SphereFace2, "uniface": UniFace}


@pytest.fixture
def fresh_registry(monkeypatch):
    """Registrations made by a test vanish after it."""
    monkeypatch.setattr(registry, "_registry", dict(registry._registry))


class TwiceArcFace(ArcFace):
    """A user's head: ArcFace with a doubled default margin."""

    def __init__(self, embedding_dim: int, num_classes: int, *, margin: float = 1.0,
                 **kwargs) -> None:
        super().__init__(embedding_dim, num_classes, margin=margin, **kwargs)


def test_builtin_names_and_classes():
    assert list_heads() == list(BUILTIN)
    for name, cls in BUILTIN.items():
        assert get_head_class(name) is cls
        head = create_head(name, 4, 3)
        assert type(head) is cls and head.weight.shape == (3 * head.rows_per_class, 4)
    assert create_head("arcface", 4, 3, scale=8.0, margin=0.3).margin == 0.3
    assert head_options("cosface") == ["scale", "margin", "detach_margin", "block_size",
                                       "matmul_dtype"]


def test_unknown_name_and_option_are_value_errors():
    with pytest.raises(ValueError, match=r"name must be one of \['softmax', "
                                         r".*'uniface'\], got 'cosine'"):
        get_head_class("cosine")
    with pytest.raises(ValueError, match=r"unknown argument\(s\) for head 'arcface': \['m'\]"):
        create_head("arcface", 4, 3, m=4)
    with pytest.raises(ValueError, match="margin must be an angle"):
        create_head("arcface", 4, 3, margin=4.0)


def test_register_a_user_head_for_create_and_the_trainer(fresh_registry):
    assert register_head("twicearc", TwiceArcFace) is TwiceArcFace
    assert register_head("twicearc", TwiceArcFace) is TwiceArcFace  # idempotent
    assert "twicearc" in list_heads() and head_options("twicearc") is None  # takes **kwargs
    head = create_head("twicearc", 4, 3)
    assert isinstance(head, TwiceArcFace) and head.margin == 1.0
    config = config_from_dict({"head": {"name": "twicearc", "scale": 8.0},
                              "train": {"max_steps": 1}})
    built = build_head(config.head, 4, 3)
    assert isinstance(built, TwiceArcFace) and built.scale == 8.0


@pytest.mark.parametrize("name,cls,match", [
    ("Twice", TwiceArcFace, "lower-case identifier"),
    ("two words", TwiceArcFace, "lower-case identifier"),
    ("twice", torch.nn.Linear, "subclass of marginface.heads.Head"),
    ("arcface", TwiceArcFace, "already registered to ArcFace"),
])
def test_bad_registrations(fresh_registry, name, cls, match):
    with pytest.raises(ValueError, match=match):
        register_head(name, cls)


def test_the_trainer_config_checks_the_name_against_the_registry():
    with pytest.raises(ValueError, match=r"head.name: expected one of \['softmax', "):
        HeadConfig(name="cosine")
    with pytest.raises(ValueError, match="head.name: expected one of"):
        config_from_dict({"head": {"name": "nope"}})
    assert HeadConfig().name == "cosface"
    assert isinstance(build_head(HeadConfig(name="amsoftmax"), 4, 3), Head)
