"""Head factories shared by the heads tests (one entry per kind and notable parameter set)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from marginface.heads import CombinedMargin, create_head, get_head_class, list_heads

# Options that keep the tests' logits small (s = 8); other heads run with their defaults.
_SMALL_SCALE = {"scale": 8.0}
TEST_OPTIONS = {"normface": _SMALL_SCALE, "cosface": {**_SMALL_SCALE, "margin": 0.35},
                "arcface": {**_SMALL_SCALE, "margin": 0.5}, "combined": _SMALL_SCALE,
                "curricularface": {**_SMALL_SCALE, "t": 0.2}, "adaface": _SMALL_SCALE,
                "magface": {**_SMALL_SCALE, "l_a": 1.0, "u_a": 6.0, "lambda_g": 2.0},
                "elasticface_arc": _SMALL_SCALE, "elasticface_cos": _SMALL_SCALE,
                "elasticface_arc_plus": _SMALL_SCALE, "elasticface_cos_plus": _SMALL_SCALE,
                "subcenter_arcface": {**_SMALL_SCALE, "margin": 0.5},
                "sphereface2": _SMALL_SCALE, "uniface": _SMALL_SCALE}


def _registered_once() -> list[str]:
    """Every registered head, aliases (amsoftmax = cosface) once."""
    seen: set[type] = set()
    names = []
    for name in list_heads():
        cls = get_head_class(name)
        if cls not in seen:
            seen.add(cls)
            names.append(name)
    return names


def _factory(name: str):
    return lambda d, c, **kw: create_head(name, d, c, **{**TEST_OPTIONS.get(name, {}), **kw})


# name -> factory(embedding_dim, num_classes, **extra): every registered head, then variants
HEAD_FACTORIES = {name: _factory(name) for name in _registered_once()}
HEAD_FACTORIES.update({
    "combined_m1_1.35": lambda d, c, **kw: CombinedMargin(d, c, scale=8.0, m1=1.35, m2=0.0,
                                                          m3=0.0, **kw),
    "combined_m1_1.5": lambda d, c, **kw: CombinedMargin(d, c, scale=8.0, m1=1.5, m2=0.2,
                                                         m3=0.1, **kw),
})

# Heads whose target is not a fixed function of cos theta_y (it depends on the norm, moving state
# or a draw), without ``detach_margin``/``target_logit``; tests/heads/test_modern_heads.py
# restates each of them.
ADAPTIVE_KINDS = ["curricularface", "adaface", "magface", "elasticface_arc", "elasticface_cos",
                  "elasticface_arc_plus", "elasticface_cos_plus"]
# One-vs-all heads: scores with a learnable bias and a binary loss, not the softmax CE of their
# logits (tests/heads/test_binary_heads.py restates them).
BINARY_KINDS = ["sphereface2", "uniface"]
MARGIN_KINDS = [k for k in HEAD_FACTORIES
                if k not in ("softmax", "sphereface", *ADAPTIVE_KINDS, *BINARY_KINDS)]


def make_head(name: str, d: int = 6, c: int = 5, dtype=torch.float64, **kw) -> nn.Module:
    head = HEAD_FACTORIES[name](d, c, **kw).to(dtype)
    with torch.no_grad():
        head.weight.normal_()
    return head


def rotation_embeddings(theta: torch.Tensor, d: int, norm: float = 1.0) -> torch.Tensor:
    """Rows ``norm*(cos t e0 + sin t e1)``: the angle to class 0 (weight row e0) is exactly t."""
    x = torch.zeros(theta.shape[0], d, dtype=theta.dtype)
    x[:, 0] = torch.cos(theta)
    x[:, 1] = torch.sin(theta)
    return norm * x


def basis_weight(c: int, d: int, dtype=torch.float64) -> torch.Tensor:
    """Class rows that are unit basis vectors (cos with a basis embedding is exactly 0 or +-1)."""
    assert c <= d
    return torch.eye(c, d, dtype=dtype)


PI = math.pi


@pytest.fixture(autouse=True)
def single_thread():
    """These tensors are tiny: on a loaded 2-core machine intra-op threads only contend
    (measured: 122 ms/step with 2 threads vs 5 ms with 1 for the training test)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
