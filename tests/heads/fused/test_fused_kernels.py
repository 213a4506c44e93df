"""The generated (torch.compile) block kernels equal the eager ones, and fall back cleanly."""

from __future__ import annotations

import math
import shutil
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from marginface.heads import SubCenterArcFace
from marginface.heads.curricular import CurricularFace, curricular_negatives
from marginface.heads.fused import fused_margin_cross_entropy, fused_softmax_cross_entropy, kernels

needs_compiler = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                                    reason="torch.compile on CPU needs a C++ compiler")


@pytest.fixture
def compiled(monkeypatch):
    """Every block goes through the generated kernels; a silent fallback fails the test."""
    monkeypatch.setattr(kernels, "MIN_COMPILED_ELEMENTS", 0)
    monkeypatch.setenv("MARGINFACE_COMPILE", "1")
    monkeypatch.setitem(kernels._state, "failed", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    assert not [w for w in caught if "marginface" in str(w.message)]
    assert kernels.compiled_enabled()


def _eager(monkeypatch, fn, *args):
    with monkeypatch.context() as m:
        m.setenv("MARGINFACE_COMPILE", "0")
        return fn(*args)


def _block(dtype, seed=0, batch=24, n=40):
    gen = torch.Generator().manual_seed(seed)
    r = (60.0 + 3.0 * torch.randn(batch, n, generator=gen)).to(dtype)
    r[3, 7] = -math.inf  # a masked target entry
    col = 0.5 + torch.rand(n, generator=gen)
    neg = torch.full((batch, 1), -64.0)
    return r, col, neg


@needs_compiler
@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compiled_blocks_equal_eager(compiled, monkeypatch, dtype):
    r, col, neg = _block(dtype)
    bias = torch.randn(r.shape[1])
    got = kernels.exp_rowsum(r.clone(), col, neg)
    want = _eager(monkeypatch, kernels.exp_rowsum, r.clone(), col, neg)
    torch.testing.assert_close(got, want, rtol=2e-5, atol=0)
    for c, b in ((col, None), (None, bias), (col, bias)):
        out = torch.empty(r.shape, dtype=dtype)
        got = kernels.grad_block(r.clone(), c, b, neg, out).float()
        want = _eager(monkeypatch, kernels.grad_block, r.clone(), c, b, neg,
                      torch.empty(r.shape, dtype=dtype)).float()
        assert got[3, 7] == 0 and want[3, 7] == 0
        torch.testing.assert_close(got, want, rtol=2e-5 if dtype == torch.float32 else 8e-3,
                                   atol=0)
    gw = torch.randn(40, 16).to(dtype)
    w, inv = torch.randn(40, 16), 0.5 + torch.rand(40)
    got, want = torch.empty(40, 16), torch.empty(40, 16)
    kernels.finish_weight_grad(gw, w, inv, got)
    _eager(monkeypatch, kernels.finish_weight_grad, gw, w, inv, want)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@needs_compiler
@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_loss_with_compiled_blocks_equals_eager(compiled, monkeypatch, dtype):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(32, 16, generator=gen, requires_grad=True)
    w = torch.randn(300, 16, generator=gen, requires_grad=True)
    b = torch.randn(300, generator=gen, requires_grad=True)
    y = torch.randint(0, 300, (32,), generator=gen)

    def run():
        a = fused_margin_cross_entropy(x, w, y, scale=64.0, m2=0.5, block_size=128,
                                       matmul_dtype=dtype)
        s = fused_softmax_cross_entropy(x, w, b, y, block_size=128, matmul_dtype=dtype)
        return [a, s, *torch.autograd.grad(a + s, (x, w, b))]

    got = run()
    want = _eager(monkeypatch, run)
    tol = 2e-5 if dtype == torch.float32 else 2e-2
    for g, e in zip(got, want, strict=True):
        torch.testing.assert_close(g, e, rtol=tol, atol=tol * float(e.abs().max()))


def test_failed_compile_warns_once_and_stays_eager(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(kernels, "MIN_COMPILED_ELEMENTS", 0)
    monkeypatch.setenv("MARGINFACE_COMPILE", "1")
    monkeypatch.setattr(kernels, "_state", {"failed": False})
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: broken)
    r, col, neg = _block(torch.float32)
    want = _eager(monkeypatch, kernels.exp_rowsum, r.clone(), col, neg)
    with pytest.warns(UserWarning, match="no compiler here"):
        got = kernels.exp_rowsum(r.clone(), col, neg)
    torch.testing.assert_close(got, want)
    assert not kernels.compiled_enabled()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kernels.exp_rowsum(r.clone(), col, neg)
    assert not caught  # warned once only


def test_small_or_float64_blocks_stay_eager(monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: pytest.fail("compiled a small block"))
    monkeypatch.setattr(kernels, "_state", {"failed": False})
    r, col, neg = _block(torch.float32)
    kernels.exp_rowsum(r, col, neg)
    monkeypatch.setattr(kernels, "MIN_COMPILED_ELEMENTS", 0)
    r, col, neg = _block(torch.float64)
    kernels.exp_rowsum(r, col, neg.double())


@needs_compiler
@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compiled_negatives_blocks_equal_eager(compiled, monkeypatch, dtype):
    """CurricularFace's ``n`` traced into the generated kernels: same sums, maxima, gradients."""
    r, col, neg = _block(dtype)
    r[5, 2] = 0.9 * r[5, 2]  # hard and easy negatives on both sides of the thresholds
    gen = torch.Generator().manual_seed(1)
    params = (0.5 * torch.rand(r.shape[0], 1, generator=gen) + 0.5,
              torch.rand(r.shape[0], 1, generator=gen))
    neg = -(r.float() * col).amax(1, keepdim=True)
    got = kernels.negatives_rowsum_max(curricular_negatives, 64.0, r, col, neg, params)
    want = _eager(monkeypatch, kernels.negatives_rowsum_max, curricular_negatives, 64.0, r, col,
                  neg, params)
    for g, e in zip(got, want, strict=True):
        torch.testing.assert_close(g, e, rtol=2e-5, atol=0)
    _out_equals_eager(monkeypatch, kernels.negatives_grad,
                      (curricular_negatives, 64.0, r, col, neg, params), r.shape, dtype)


def _out_equals_eager(monkeypatch, kernel, args, shape, dtype):
    """``kernel(*args, out)`` generated and eager give the same block; returns both."""
    out = torch.empty(shape, dtype=dtype)
    kernel(*args, out)
    ref = _eager(monkeypatch, kernel, *args, torch.empty(shape, dtype=dtype))
    torch.testing.assert_close(out.float(), ref.float(),
                               rtol=2e-5 if dtype == torch.float32 else 8e-3, atol=0)
    return out, ref


@needs_compiler
@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_curricular_loss_with_compiled_blocks_equals_eager_and_float64(compiled, monkeypatch,
                                                                       dtype):
    def make(mm):
        return CurricularFace(16, 300, t=0.3, block_size=128, matmul_dtype=mm).eval()

    _generated_equals_eager_and_float64(monkeypatch, _head_run(make, 300, seed=3), dtype,
                                        ("negatives_grad", curricular_negatives, 64.0))


def _head_run(make, rows, seed):
    """``run(precision, matmul_dtype)``: a head's loss and gradients on fixed random data."""
    gen = torch.Generator().manual_seed(seed)
    x, w = torch.randn(32, 16, generator=gen), torch.randn(rows, 16, generator=gen)
    y = torch.randint(0, 300, (32,), generator=gen)

    def run(precision=torch.float64, mm=torch.float32):
        head = make(mm).to(precision)
        with torch.no_grad():
            head.weight.copy_(w)
        xi = x.to(precision).requires_grad_()
        loss = head.loss(xi, y)
        return [loss, *torch.autograd.grad(loss, (xi, head.weight))]

    return run


def _generated_equals_eager_and_float64(monkeypatch, run, dtype, kernel_name):
    """``run(precision, matmul_dtype)`` -> [loss, grads...]: generated == eager ~ float64."""
    got = run(torch.float32, dtype)
    assert kernel_name in kernels._state  # it ran generated
    want = _eager(monkeypatch, run, torch.float32, dtype)
    exact = run()
    tol = 2e-5 if dtype == torch.float32 else 2e-2
    for g, e, f in zip(got, want, exact, strict=True):
        torch.testing.assert_close(g, e, rtol=tol, atol=tol * float(e.detach().abs().max()))
        torch.testing.assert_close(g.double(), f, rtol=10 * tol,
                                   atol=10 * tol * float(f.detach().abs().max()))


def _sub_block(dtype, k, seed=0, batch=24, n=40):
    """(batch, n K) raw products, class-major, one class's K entries masked (a target)."""
    r, col, neg = _block(dtype, seed, batch, n * k)
    r[3, 2 * k:3 * k] = -math.inf
    return r, col, neg


def _slabs(r, col, k):
    """A class-major (batch, n K) block and its (n K,) norms, sub-centre-major as the kernels take
    them: (K, batch, n) and (K, n)."""
    n = r.shape[1] // k
    return (r.view(r.shape[0], n, k).permute(2, 0, 1).contiguous(),
            col.view(n, k).t().contiguous())


def _class_major(out):
    """A (K, batch, n) gradient block back in the class-major (batch, n K) layout."""
    return out.permute(1, 2, 0).reshape(out.shape[1], -1)


def _sub_kernels(k, r, col, neg, dtype, eager=None):
    """The two sub-centre kernels on a class-major block; results class-major."""
    rk, ck = _slabs(r, col, k)
    out = torch.empty(rk.shape, dtype=dtype)
    if eager is None:
        total = kernels.subcenter_exp_rowsum(rk, ck, neg)
        kernels.subcenter_grad(rk, ck, neg, out)
    else:
        total = _eager(eager, kernels.subcenter_exp_rowsum, rk, ck, neg)
        _eager(eager, kernels.subcenter_grad, rk, ck, neg, out)
    return total, _class_major(out)


def _sub_restated(r, col, neg, k):
    """Sub-center ArcFace's block terms written out: z_ij = max_k, gradient at the arg-max."""
    z = r.double() * col.double()
    total, grad = torch.zeros(r.shape[0], dtype=torch.float64), torch.zeros_like(z)
    for j in range(r.shape[1] // k):
        zj = z[:, j * k:(j + 1) * k]
        top, idx = zj.max(1)
        e = torch.exp(top + neg.double().squeeze(1))
        total += e
        rows = torch.arange(r.shape[0])
        grad[rows, j * k + idx] = e * col.double()[j * k + idx]
    return total, grad


@given(k=st.integers(1, 4), seed=st.integers(0, 2**16), dtype=st.sampled_from(
    [torch.float32, torch.bfloat16, torch.float64]))
@settings(max_examples=25, deadline=None)
def test_subcenter_kernels_equal_the_restatement(k, seed, dtype):
    r, col, neg = _sub_block(dtype, k, seed, batch=6, n=8)
    cd = torch.float64 if dtype == torch.float64 else torch.float32
    col, neg = col.to(cd), neg.to(cd)
    total, grad = _sub_restated(r, col, neg, k)
    got, out = _sub_kernels(k, r, col, neg, dtype)
    torch.testing.assert_close(got.double(), total,
                               rtol=2e-5 if cd == torch.float32 else 1e-12, atol=0)
    assert (out[3, 2 * k:3 * k] == 0).all()  # the masked target class gives nothing
    assert ((out != 0).view(r.shape[0], -1, k).sum(2) <= 1).all()  # one sub-centre per class
    tol = {torch.float32: 2e-5, torch.bfloat16: 8e-3, torch.float64: 1e-12}[dtype]
    torch.testing.assert_close(out.double(), grad, rtol=tol, atol=0)


def _tied_sub_block(dtype, k=3):
    """Classes whose sub-centre products tie: all K, the last two, and the first two."""
    r, col, neg = _sub_block(dtype, k, batch=4, n=6)
    col = torch.ones_like(col)  # ties in r stay ties once scaled
    r[:, 0:k] = 0.25
    r[:, k] = -1.0
    r[:, k + 1:2 * k] = 0.5
    r[:, 2 * k:2 * k + 2] = 0.75
    r[:, 2 * k + 2] = -1.0
    r[3, 2 * k:3 * k] = -math.inf
    return r, col, neg


def _assert_first_tied_subcentre(out, k=3):
    per_class = out.view(out.shape[0], -1, k)
    assert ((per_class != 0).sum(2) <= 1).all()  # never the gradient twice
    assert (per_class[:, 0, 0] != 0).all() and (per_class[:, 0, 1:] == 0).all()
    assert (per_class[:, 1, 1] != 0).all() and (per_class[:, 1, 2] == 0).all()
    assert (per_class[:3, 2, 0] != 0).all() and (per_class[3, 2] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_tied_subcentres_give_the_gradient_to_the_first_only(monkeypatch, dtype):
    r, col, neg = _tied_sub_block(dtype)
    _, out = _sub_kernels(3, r, col, neg, dtype, eager=monkeypatch)
    _assert_first_tied_subcentre(out)


@needs_compiler
@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compiled_tied_subcentres_give_the_gradient_to_the_first_only(compiled, dtype):
    r, col, neg = _tied_sub_block(dtype)
    _, out = _sub_kernels(3, r, col, neg, dtype)
    assert ("subcenter_grad", 3) in kernels._state  # it ran generated
    _assert_first_tied_subcentre(out)


@needs_compiler
@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compiled_subcenter_blocks_equal_eager(compiled, monkeypatch, dtype):
    k = 3
    r, col, neg = _sub_block(dtype, k)
    rk, ck = _slabs(r, col, k)
    got = kernels.subcenter_exp_rowsum(rk, ck, neg)
    assert ("subcenter_exp_rowsum", k) in kernels._state  # it ran generated
    want = _eager(monkeypatch, kernels.subcenter_exp_rowsum, rk, ck, neg)
    torch.testing.assert_close(got, want, rtol=2e-5, atol=0)
    out, ref = _out_equals_eager(monkeypatch, kernels.subcenter_grad, (rk, ck, neg), rk.shape,
                                 dtype)
    assert torch.equal(out != 0, ref != 0)  # the same arg-max sub-centres


@needs_compiler
@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_subcenter_loss_with_compiled_blocks_equals_eager_and_float64(compiled, monkeypatch,
                                                                      dtype):
    def make(mm):
        return SubCenterArcFace(16, 300, block_size=128, matmul_dtype=mm)

    _generated_equals_eager_and_float64(monkeypatch, _head_run(make, 300 * 3, seed=4), dtype,
                                        ("subcenter_grad", 3))
