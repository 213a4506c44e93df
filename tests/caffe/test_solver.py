"""Caffe solver settings: field checks, every lr_policy by hand, Caffe's SGD update rule."""

from __future__ import annotations

import math
import re

import pytest
import torch

from marginface.caffe.solver import (
    CaffeSGD,
    SolverConfig,
    caffe_learning_rate,
    make_lr_scheduler,
    make_torch_optimizer,
)

# the fields of ../shared/caffe/amsoftmax/face_solver.prototxt, as the text parser yields them
AMSOFTMAX_SOLVER = {
    "net": "face_train_test.prototxt", "test_iter": [10], "test_interval": 500000,
    "test_initialization": False, "base_lr": 0.1, "lr_policy": "multistep", "gamma": 0.1,
    "stepvalue": [16000, 24000, 28000], "max_iter": 30000, "iter_size": 1, "display": 100,
    "momentum": 0.9, "weight_decay": 0.0005, "snapshot": 1000,
    "snapshot_prefix": "face_train_test", "solver_mode": "GPU",
}


def _cfg(**fields) -> SolverConfig:
    return SolverConfig.from_dict({"base_lr": 0.01, **fields})


def test_from_dict_real_solver_fields_and_ignored_record():
    cfg = SolverConfig.from_dict(AMSOFTMAX_SOLVER)
    assert cfg.stepvalue == [16000, 24000, 28000] and cfg.test_iter == [10]
    assert cfg.momentum == 0.9 and cfg.weight_decay == 0.0005 and cfg.max_iter == 30000
    assert cfg.ignored == {"test_initialization": False, "solver_mode": "GPU"}
    assert cfg.type == "SGD"


def test_from_dict_message_like_items_and_single_repeated():
    class Msg:  # the prototxt parser's message: items() yields (name, [values])
        def items(self):
            return iter([("base_lr", [0.1]), ("lr_policy", ["step"]), ("stepsize", [100]),
                         ("gamma", [0.5]), ("stepvalue", [7]), ("solver_type", ["NESTEROV"])])
    cfg = SolverConfig.from_dict(Msg())
    assert cfg.stepsize == 100 and cfg.stepvalue == [7] and cfg.type == "Nesterov"
    assert _cfg(lr_policy="fixed", solver_type=5).type == "Adam"


@pytest.mark.parametrize("fields,match", [
    ({"lr_policy": "fixed", "learning_rate": 0.1}, "unknown config key 'solver.learning_rate'"),
    ({"lr_policy": "cosine"}, "lr_policy must be one of"),
    ({"gamma": 0.1}, "'lr_policy' is missing"),
    ({"lr_policy": "step"}, "stepsize > 0"),
    ({"lr_policy": "poly", "power": 1}, "max_iter > 0"),
    ({"lr_policy": "multistep", "stepvalue": [10, 5]}, "increase strictly"),
    ({"lr_policy": "fixed", "max_iter": 10.5}, "solver.max_iter: expected an int"),
    ({"lr_policy": "fixed", "momentum": "0.9"}, "solver.momentum: expected a number"),
    ({"lr_policy": "fixed", "gamma": [0.1, 0.2]}, "given 2 times"),
    ({"lr_policy": "fixed", "iter_size": 0}, "iter_size must be >= 1"),
    ({"lr_policy": "fixed", "type": "LBFGS"}, "unknown solver type"),
    ({"lr_policy": "fixed", "ignored": {}}, "unknown field 'ignored'"),
    ({"lr_policy": "fixed", "test_iter": [1.5]}, r"solver.test_iter\[0\]: expected an int"),
])
def test_from_dict_errors(fields, match):
    with pytest.raises(ValueError, match=re.escape(match) if "'" in match else match):
        _cfg(**fields)


def test_every_policy_by_hand():
    base = 0.01
    assert caffe_learning_rate(_cfg(lr_policy="fixed"), 12345) == base
    step = _cfg(lr_policy="step", gamma=0.1, stepsize=100)
    assert caffe_learning_rate(step, 99) == base
    assert caffe_learning_rate(step, 100) == pytest.approx(0.001)
    assert caffe_learning_rate(step, 250) == pytest.approx(0.0001)
    exp = _cfg(lr_policy="exp", gamma=0.99)
    assert caffe_learning_rate(exp, 10) == pytest.approx(base * 0.99 ** 10)
    inv = _cfg(lr_policy="inv", gamma=1e-4, power=0.75)
    assert caffe_learning_rate(inv, 5000) == pytest.approx(base * 1.5 ** -0.75)
    poly = _cfg(lr_policy="poly", power=2.0, max_iter=1000)
    assert caffe_learning_rate(poly, 250) == pytest.approx(base * 0.75 ** 2)
    assert caffe_learning_rate(poly, 1000) == 0.0
    with pytest.raises(ValueError, match="past max_iter"):
        caffe_learning_rate(poly, 1001)
    sig = _cfg(lr_policy="sigmoid", gamma=-0.01, stepsize=500)
    assert caffe_learning_rate(sig, 500) == pytest.approx(base / 2)
    assert caffe_learning_rate(sig, 700) == pytest.approx(base / (1 + math.exp(2.0)))
    with pytest.raises(ValueError, match="iteration"):
        caffe_learning_rate(step, -1)


def test_multistep_on_the_real_solver_values():
    cfg = SolverConfig.from_dict(AMSOFTMAX_SOLVER)
    expected = {0: 0.1, 15999: 0.1, 16000: 0.01, 23999: 0.01, 24000: 0.001, 28000: 0.0001,
                29999: 0.0001}
    for it, lr in expected.items():
        assert caffe_learning_rate(cfg, it) == pytest.approx(lr, rel=1e-12), it


def test_caffe_sgd_update_rule_by_hand():
    """Two steps with a rate change: Caffe folds lr into the history (v = mu v + lr g)."""
    cfg = _cfg(lr_policy="step", gamma=0.5, stepsize=1, momentum=0.9, weight_decay=0.1)
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    b = torch.nn.Parameter(torch.tensor([0.5], dtype=torch.float64))
    opt = make_torch_optimizer(cfg, [([w], 1.0, 1.0), ([b], 2.0, 0.0)])
    sched = make_lr_scheduler(cfg, opt)
    gw, gb = torch.tensor([0.3, 0.4], dtype=torch.float64), torch.tensor([1.0],
                                                                          dtype=torch.float64)
    vw, vb = torch.zeros(2, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    w_ref, b_ref = w.detach().clone(), b.detach().clone()
    for it in range(3):
        rate = 0.01 * 0.5 ** it
        assert opt.param_groups[0]["lr"] == pytest.approx(rate)
        assert opt.param_groups[1]["lr"] == pytest.approx(2 * rate)
        w.grad, b.grad = gw.clone(), gb.clone()
        opt.step()
        sched.step()
        vw = 0.9 * vw + rate * (gw + 0.1 * w_ref)
        vb = 0.9 * vb + 2 * rate * gb  # decay_mult 0: no weight decay on the bias
        w_ref, b_ref = w_ref - vw, b_ref - vb
        torch.testing.assert_close(w.detach(), w_ref, rtol=1e-14, atol=0)
        torch.testing.assert_close(b.detach(), b_ref, rtol=1e-14, atol=0)


def test_caffe_sgd_nesterov_iter_size_clip_and_frozen():
    p = torch.nn.Parameter(torch.tensor([3.0, 4.0], dtype=torch.float64))
    frozen = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = CaffeSGD([{"params": [p]}, {"params": [frozen], "lr": 0.0}], lr=0.1, momentum=0.5,
                   nesterov=True, iter_size=2, clip_gradients=1.0)
    v = torch.zeros(2, dtype=torch.float64)
    ref = p.detach().clone()
    for _ in range(2):
        p.grad = torch.tensor([6.0, 8.0], dtype=torch.float64)  # norm 10 -> clipped to 1
        frozen.grad = torch.tensor([0.0], dtype=torch.float64)
        opt.step()
        g = torch.tensor([0.6, 0.8], dtype=torch.float64) / 2  # clip, then / iter_size
        v_old = v
        v = 0.5 * v + 0.1 * g
        ref = ref - ((1 + 0.5) * v - 0.5 * v_old)
    torch.testing.assert_close(p.detach(), ref, rtol=1e-14, atol=0)
    assert frozen.item() == 1.0


def test_l1_regularization_and_unsupported_type():
    p = torch.nn.Parameter(torch.tensor([2.0, -3.0]))
    cfg = _cfg(lr_policy="fixed", weight_decay=0.5, regularization_type="L1")
    frozen = torch.nn.Parameter(torch.tensor([1.0]))
    opt = make_torch_optimizer(cfg, [([p], 1.0, 1.0), ([frozen], 0.0, 1.0)])  # lr_mult 0
    p.grad, frozen.grad = torch.zeros(2), torch.tensor([5.0])
    opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([2.0 - 0.005, -3.0 + 0.005]))
    assert frozen.item() == 1.0
    with pytest.raises(ValueError, match="not supported"):
        make_torch_optimizer(_cfg(lr_policy="fixed", type="Adam"), [([p], 1.0, 1.0)])
    with pytest.raises(ValueError, match=r"param_groups\[0\]"):
        make_torch_optimizer(cfg, [([p], -1.0, 1.0)])



SOLVERS = ["amsoftmax/face_solver.prototxt", "combined-margin/solver.prototxt",
           "mobilefacenet/solver.prototxt", "sphereface/sphereface_solver.prototxt"]


@pytest.mark.shared
@pytest.mark.parametrize("rel", SOLVERS)
def test_real_solvers_parse(shared_dir, rel):
    cfg = SolverConfig.from_prototxt(shared_dir / "caffe" / rel)
    assert cfg.lr_policy == "multistep" and cfg.base_lr == 0.1 and cfg.gamma == 0.1
    assert cfg.momentum == 0.9 and len(cfg.stepvalue) == 3
    assert cfg.ignored["solver_mode"] == "GPU"
    assert caffe_learning_rate(cfg, cfg.stepvalue[0]) == pytest.approx(0.01)
    if rel.startswith("combined"):
        assert cfg.iter_size == 2 and cfg.stepvalue == [170000, 250000, 320000]
        assert cfg.max_iter == 3000000 and cfg.weight_decay == 0.0005
    if rel.startswith("mobilefacenet"):
        assert cfg.weight_decay == pytest.approx(0.00004) and cfg.snapshot == 4000


def test_from_prototxt_text_and_error():
    cfg = SolverConfig.from_prototxt('base_lr: 0.05\nlr_policy: "poly"\npower: 1\nmax_iter: 10\n')
    assert caffe_learning_rate(cfg, 5) == pytest.approx(0.025)
    with pytest.raises(ValueError, match="<solver text>: unknown config key 'solver.foo'"):
        SolverConfig.from_prototxt('base_lr: 0.05\nlr_policy: "fixed"\nfoo: 1\n')
