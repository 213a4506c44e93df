"""CurricularFace, AdaFace, MagFace and ElasticFace: the fused loss, ``forward`` and
``unfused_loss`` equal plain-torch restatements of the papers (float64 values and gradients,
several blocks); moving state moves once per training step and resumes exactly; gradcheck; finite
at cos = +-1, the norm clamps and under bf16/fp16 autocast; bad parameters named."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from heads_cases import (
    basis_weight,
    rotation_embeddings,
    single_thread,  # noqa: F401  (autouse fixture)
)
from hypothesis import given, settings
from hypothesis import strategies as st
from modern_references import (
    adaface_loss,
    curricular_loss,
    elastic_loss,
    elastic_plus_margins,
    magface_loss,
)

from marginface.heads import (
    AdaFace,
    CurricularFace,
    ElasticArcFace,
    ElasticArcFacePlus,
    ElasticCosFace,
    ElasticCosFacePlus,
    MagFace,
    fused_cross_entropy,
)
from marginface.heads.elastic import assign_by_target_cos
from marginface.heads.fused import batch_stats

D, C, B = 6, 7, 9


def _data(seed: int, norm_scale: float = 2.0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, D, generator=gen, dtype=torch.float64) * norm_scale
    w = torch.randn(C, D, generator=gen, dtype=torch.float64)
    y = torch.randint(0, C, (B,), generator=gen)
    return x, w, y


def _heads():
    return {
        "curricularface": lambda: CurricularFace(D, C, scale=4.0, margin=0.3, t=0.2, block_size=2),
        "adaface": lambda: AdaFace(D, C, scale=4.0, margin=0.4, h=0.333, block_size=2),
        "magface": lambda: MagFace(D, C, scale=4.0, l_a=1.0, u_a=6.0, l_m=0.2, u_m=0.6,
                                   lambda_g=2.0, block_size=2),
        "elasticface_arc": lambda: ElasticArcFace(D, C, scale=4.0, margin=0.5, std=0.1, seed=3,
                                                  block_size=2),
        "elasticface_cos": lambda: ElasticCosFace(D, C, scale=4.0, margin=0.35, std=0.1, seed=4,
                                                  block_size=2),
        "elasticface_arc_plus": lambda: ElasticArcFacePlus(D, C, scale=4.0, margin=0.5, std=0.1,
                                                           seed=5, block_size=2),
        "elasticface_cos_plus": lambda: ElasticCosFacePlus(D, C, scale=4.0, margin=0.35,
                                                           std=0.1, seed=6, block_size=2),
    }


def _reference(name, head, x, w, y, train):
    """The restatement's loss with the head's state before the step (state read, not moved)."""
    if name == "curricularface":
        return curricular_loss(x, w, y, scale=head.scale, margin=head.margin, t=float(head.t),
                               momentum=head.momentum, train=train)[0]
    if name == "adaface":
        return adaface_loss(x, w, y, scale=head.scale, margin=head.margin, h=head.h,
                            mean=float(head.batch_mean), std=float(head.batch_std),
                            train=train)[0]
    if name == "magface":
        return magface_loss(x, w, y, scale=head.scale, l_a=head.l_a, u_a=head.u_a,
                            l_m=head.l_m, u_m=head.u_m, lambda_g=head.lambda_g)
    if train:  # the paper's draw: N(m, std) from the seeded generator, in order
        gen = torch.Generator()
        gen.set_state(head.rng_state.clone())
        margins = torch.normal(head.margin, head.std, (x.shape[0],), generator=gen,
                               dtype=torch.float64)
        if name.endswith("_plus"):
            margins = elastic_plus_margins(x, w, y, margins)
    else:
        margins = torch.full((x.shape[0],), head.margin, dtype=torch.float64)
    return elastic_loss(x, w, y, margins, scale=head.scale, arc="_arc" in name)


def _grads(loss, *inputs):
    return (loss, *torch.autograd.grad(loss, inputs))


@pytest.mark.parametrize("path", ["loss", "unfused_loss"])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("name", list(_heads()))
def test_equals_the_papers_restatement(name, train, path):
    for seed in (0, 1):
        head = _heads()[name]().double().train(train)
        x, w, y = _data(seed)
        with torch.no_grad():
            head.weight.copy_(w)
        xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
        ref = _grads(_reference(name, head, xr, wr, y, train), xr, wr)
        xf = x.clone().requires_grad_()
        got = _grads(getattr(head, path)(xf, y), xf, head.weight)
        for a, b in zip(got, ref, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(_heads()))
def test_training_forward_gives_the_restated_logits(name):
    head = _heads()[name]().double().train()
    x, w, y = _data(2)
    with torch.no_grad():
        head.weight.copy_(w)
    expected = _reference(name, head, x, w, y, True)
    logits = head(x, y)
    ce = torch.nn.functional.cross_entropy(logits, y)
    if name == "magface":
        ce = ce + head.extra_loss(x, y).mean()
    torch.testing.assert_close(ce, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(head.eval()(x), head.scale * torch.nn.functional.normalize(x) @
                               torch.nn.functional.normalize(w).t())


def _state(head):
    return {k: v.clone() for k, v in head.state_dict().items() if k != "weight"}


STATEFUL = ["curricularface", "adaface", "elasticface_arc", "elasticface_cos",
            "elasticface_arc_plus", "elasticface_cos_plus"]


@pytest.mark.parametrize("name", STATEFUL)
def test_state_moves_once_per_training_step_and_never_in_eval(name):
    head = _heads()[name]().double()
    x, w, y = _data(3)
    with torch.no_grad():
        head.weight.copy_(w)
    start = _state(head)
    head.eval()
    head.loss(x, y)
    head(x, y)
    head.train()
    head(x)  # no labels: plain logits, no step
    for key, value in _state(head).items():
        torch.testing.assert_close(value, start[key], rtol=0, atol=0)
    head.loss(x, y)
    once = _state(head)
    assert any(not torch.equal(once[k], start[k]) for k in start)
    twin = _heads()[name]().double().train()
    with torch.no_grad():
        twin.weight.copy_(w)
    twin(x, y)  # a training forward with labels is one step too
    for key, value in _state(twin).items():
        torch.testing.assert_close(value, once[key], rtol=1e-12, atol=0)


def test_curricular_t_and_adaface_statistics_follow_the_papers_updates():
    x, w, y = _data(4)
    cur = CurricularFace(D, C, t=0.1).double()
    with torch.no_grad():
        cur.weight.copy_(w)
    cur.loss(x, y)
    cos_y = (torch.nn.functional.normalize(x) * torch.nn.functional.normalize(w)[y]).sum(1)
    torch.testing.assert_close(float(cur.t), 0.99 * 0.1 + 0.01 * float(cos_y.mean()))
    ada = AdaFace(D, C).double()
    ada.loss(x, y)
    n = x.norm(dim=1)
    torch.testing.assert_close(float(ada.batch_mean), 0.99 * 20 + 0.01 * float(n.mean()))
    torch.testing.assert_close(float(ada.batch_std), 0.99 * 100 + 0.01 * float(n.std()))
    ada.loss(x[:1], y[:1])  # one sample: the std stays
    torch.testing.assert_close(float(ada.batch_std), 0.99 * 100 + 0.01 * float(n.std()))


@pytest.mark.parametrize("name", STATEFUL)
def test_resume_from_state_dict_is_exact(name):
    x, w, y = _data(5)
    steps = [x * (1.0 + 0.1 * k) for k in range(3)]
    straight = _heads()[name]().double().train()
    with torch.no_grad():
        straight.weight.copy_(w)
    expected = [float(straight.loss(s, y).detach()) for s in steps]
    first = _heads()[name]().double().train()
    with torch.no_grad():
        first.weight.copy_(w)
    got = [float(first.loss(steps[0], y).detach())]
    saved = copy.deepcopy(first.state_dict())
    resumed = _heads()[name]().double().train()
    if name.startswith("elastic"):  # another seed: the loaded generator state decides
        resumed.rng_state.copy_(torch.Generator().manual_seed(99).get_state())
    resumed.load_state_dict(saved)
    got += [float(resumed.loss(s, y).detach()) for s in steps[1:]]
    for a, b in zip(got, expected, strict=True):
        assert a == pytest.approx(b, rel=1e-12)


def test_elastic_draws_follow_the_seed_and_differ_between_seeds():
    a, b, c = (ElasticArcFace(D, C, seed=s).double() for s in (1, 1, 2))
    m1, m2, m3 = (h.draw_margins(1000) for h in (a, b, c))
    assert torch.equal(m1, m2) and not torch.equal(m1, m3)
    assert abs(float(m1.mean()) - 0.5) < 0.01 and abs(float(m1.std()) - 0.05) < 0.005
    assert not torch.equal(a.draw_margins(4), m1[:4])  # the state moved on


@pytest.mark.parametrize("name", list(_heads()))
def test_gradcheck_of_the_fused_loss_with_the_spec_held(name):
    head = _heads()[name]().double().train()
    x, w, y = _data(6)
    with torch.no_grad():
        head.weight.copy_(w)
    stats = batch_stats(x, w, y, y, target_cos=head.needs_target_cos)
    head.update_state(stats)
    spec = head.logit_spec(stats)
    xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b: fused_cross_entropy(a, b, y, spec, block_size=2), (xg, wg))
    if name == "magface":  # the regulariser through the norm
        assert torch.autograd.gradcheck(lambda a: head.extra_loss(a, y).mean(), (xg,))
        # and the whole unfused path with the live norm in the margin
        assert torch.autograd.gradcheck(lambda a, b: _reference(name, head, a, b, y, True),
                                        (xg, wg))


PRECISIONS = {"float64": (torch.float64, None), "float32": (torch.float32, None),
              "bf16": (torch.float32, torch.bfloat16), "fp16": (torch.float32, torch.float16)}


def _finite_step(head, x, y, precision):
    dtype, autocast = PRECISIONS[precision]
    head = head.to(dtype).train()
    with torch.no_grad():
        head.weight.copy_(basis_weight(C - 2, D, dtype))
    leaf = x.to(dtype).requires_grad_()
    ctx = torch.autocast("cpu", dtype=autocast) if autocast else torch.autocast("cpu",
                                                                                enabled=False)
    with ctx:
        emb = leaf if autocast is None else leaf.to(autocast)
        loss = head.loss(emb, y)
        logits = head(emb, y)
    grads = torch.autograd.grad(loss, (leaf, head.weight))
    assert torch.isfinite(loss) and torch.isfinite(logits).all()
    assert all(torch.isfinite(g).all() for g in grads)


@settings(max_examples=20, deadline=None)
@given(name=st.sampled_from(list(_heads())), precision=st.sampled_from(list(PRECISIONS)),
       angle=st.sampled_from([0.0, math.pi, math.pi / 2, 1e-9, math.pi - 1e-9]),
       norm=st.sampled_from(["low", "high", "mid"]))
def test_finite_at_cos_pm1_at_the_norm_clamps_and_under_autocast(name, precision, angle, norm):
    head = {"curricularface": CurricularFace, "adaface": AdaFace, "magface": MagFace,
            "elasticface_arc": ElasticArcFace, "elasticface_cos": ElasticCosFace,
            "elasticface_arc_plus": ElasticArcFacePlus,
            "elasticface_cos_plus": ElasticCosFacePlus}[name](D, C - 2, block_size=2)
    clamps = {"magface": (10.0, 110.0), "adaface": (0.001, 100.0)}.get(name, (1e-3, 50.0))
    value = {"low": clamps[0], "high": clamps[1], "mid": sum(clamps) / 2}[norm]
    theta = torch.tensor([angle, angle, 0.0, math.pi], dtype=torch.float64)
    x = rotation_embeddings(theta, D, norm=value)
    y = torch.tensor([0, 0, 0, 0])
    _finite_step(head, x, y, precision)


@pytest.mark.parametrize("build, name, value", [
    (lambda v: MagFace(D, C, l_a=v, u_a=5.0), "l_a", 5.0),
    (lambda v: MagFace(D, C, l_a=v, u_a=5.0), "l_a", 6.0),
    (lambda v: MagFace(D, C, l_a=v), "l_a", 0.0),
    (lambda v: MagFace(D, C, l_m=v, u_m=0.5), "l_m", 0.6),
    (lambda v: MagFace(D, C, u_m=v), "u_m", 4.0),
    (lambda v: MagFace(D, C, lambda_g=v), "lambda_g", -1.0),
    (lambda v: AdaFace(D, C, h=v), "h", 0.0),
    (lambda v: AdaFace(D, C, h=v), "h", -0.3),
    (lambda v: AdaFace(D, C, margin=v), "margin", -0.1),
    (lambda v: AdaFace(D, C, momentum=v), "momentum", 1.5),
    (lambda v: CurricularFace(D, C, momentum=v), "momentum", -0.1),
    (lambda v: CurricularFace(D, C, t=v), "t", 2.0),
    (lambda v: CurricularFace(D, C, margin=v), "margin", 4.0),
    (lambda v: ElasticArcFace(D, C, std=v), "std", -0.05),
    (lambda v: ElasticCosFace(D, C, std=v), "std", float("nan")),
    (lambda v: ElasticArcFace(D, C, seed=v), "seed", -1),
    (lambda v: ElasticArcFace(D, C, seed=v), "seed", 1.5),
    (lambda v: ElasticArcFacePlus(D, C, std=v), "std", -0.01),
    (lambda v: ElasticCosFacePlus(D, C, seed=v), "seed", -2),
])
def test_bad_parameters_are_named(build, name, value):
    with pytest.raises(ValueError, match=name):
        build(value)


def test_paper_defaults():
    cur = CurricularFace(D, C)
    assert (cur.scale, cur.margin, cur.momentum, float(cur.t)) == (64.0, 0.5, 0.01, 0.0)
    ada = AdaFace(D, C)
    assert (ada.scale, ada.margin, ada.h, ada.momentum) == (64.0, 0.4, 0.333, 0.01)
    assert (float(ada.batch_mean), float(ada.batch_std)) == (20.0, 100.0)
    mag = MagFace(D, C)
    assert (mag.scale, mag.l_a, mag.u_a, mag.l_m, mag.u_m, mag.lambda_g) == (
        64.0, 10.0, 110.0, 0.45, 0.8, 35.0)
    arc, cos = ElasticArcFace(D, C), ElasticCosFace(D, C)
    assert (arc.scale, arc.margin, arc.std, cos.scale, cos.margin, cos.std) == (
        64.0, 0.5, 0.05, 64.0, 0.35, 0.05)
    arc, cos = ElasticArcFacePlus(D, C), ElasticCosFacePlus(D, C)  # the authors' configs
    assert (arc.scale, arc.margin, arc.std, cos.scale, cos.margin, cos.std) == (
        64.0, 0.5, 0.0175, 64.0, 0.35, 0.02)


def test_magface_margin_grows_with_the_magnitude_and_magnitude_is_the_quality_score():
    head = MagFace(D, C)
    norms = torch.tensor([5.0, 10.0, 60.0, 110.0, 200.0])
    torch.testing.assert_close(head.margin(norms),
                               torch.tensor([0.45, 0.45, 0.625, 0.8, 0.8]))
    x = torch.randn(3, D) * 30
    torch.testing.assert_close(head.magnitude(x), x.norm(dim=1))
    g = head.g(norms)  # g decreasing on [l_a, u_a]: its minimum is at u_a (a* = u_a)
    assert bool((g[1:4].diff() < 0).all())


@pytest.mark.parametrize("cls", [ElasticArcFacePlus, ElasticCosFacePlus])
def test_elastic_plus_gives_the_largest_margin_to_the_sample_farthest_from_its_centre(cls):
    head = cls(D, C - 2, std=0.1, seed=7).double().train()
    theta = torch.tensor([0.3, 1.2, 0.1, 2.5, 0.7, 1.9], dtype=torch.float64)
    x = rotation_embeddings(theta, D, norm=3.0)
    with torch.no_grad():
        head.weight.copy_(basis_weight(C - 2, D, torch.float64))
    y = torch.zeros(theta.shape[0], dtype=torch.long)
    draws = head.draw_margins(theta.shape[0])
    head.rng_state.copy_(torch.Generator().manual_seed(7).get_state())  # the same draws again
    head.loss(x, y)
    cos_y = torch.nn.functional.normalize(x)[:, 0]  # class 0 is the first basis vector
    torch.testing.assert_close(cos_y, torch.cos(theta))
    order = torch.argsort(theta)  # closest to its centre first
    assert bool((head._drawn[order].diff() > 0).all())  # farther: strictly larger margin
    torch.testing.assert_close(torch.sort(head._drawn).values, torch.sort(draws).values,
                               rtol=0, atol=0)  # the same draws, only reassigned


def test_assign_by_target_cos_keeps_batch_order_on_ties():
    margins = torch.tensor([0.4, 0.1, 0.3, 0.2], dtype=torch.float64)
    cos = torch.tensor([0.5, 0.5, 0.9, 0.5], dtype=torch.float64)
    # sorted cos (stable, descending): rows 2, 0, 1, 3 get 0.1, 0.2, 0.3, 0.4
    torch.testing.assert_close(assign_by_target_cos(margins, cos),
                               torch.tensor([0.2, 0.3, 0.1, 0.4], dtype=torch.float64))
