"""The weight gradient's memory is reused only when nothing can see the previous gradient."""

from __future__ import annotations

import torch

from marginface.heads import ArcFace
from marginface.heads.fused import gradient_cache as gc


def test_reused_after_drop_fresh_while_held(monkeypatch):
    monkeypatch.setattr(gc, "MIN_CACHED_BYTES", 0)
    w = torch.nn.Parameter(torch.randn(10, 4))
    a = gc.reusable_gradient(w, (10, 4), torch.float32)
    ptr = a.data_ptr()
    held = gc.reusable_gradient(w, (10, 4), torch.float32)
    assert held.data_ptr() != ptr  # a is still alive
    del a, held
    again = gc.reusable_gradient(w, (10, 4), torch.float32)
    start = again.data_ptr()
    view = again[2:]  # a view keeps the storage busy
    del again
    assert gc.reusable_gradient(w, (10, 4), torch.float32).data_ptr() != start
    assert view.shape == (8, 4)


def test_small_tensors_are_not_cached():
    w = torch.nn.Parameter(torch.randn(10, 4))
    a = gc.reusable_gradient(w, (10, 4), torch.float32)
    assert gc._cache.get(w) is None and a.shape == (10, 4)


def _data():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 8, generator=gen)
    y = torch.randint(0, 50, (16,), generator=gen)
    return x, y


def test_training_steps_and_accumulation_see_correct_gradients(monkeypatch):
    monkeypatch.setattr(gc, "MIN_CACHED_BYTES", 0)
    x, y = _data()
    head = ArcFace(8, 50, block_size=16)
    ref = ArcFace(8, 50, block_size=16)
    ref.load_state_dict(head.state_dict())
    monkeypatch.setattr(gc, "MIN_CACHED_BYTES", 1 << 62)
    ref.loss(x, y).backward()
    expected = ref.weight.grad.clone()
    monkeypatch.setattr(gc, "MIN_CACHED_BYTES", 0)

    head.loss(x, y).backward()
    first = head.weight.grad
    torch.testing.assert_close(first, expected)
    head.loss(x, y).backward()  # accumulates into .grad, which must not be overwritten
    torch.testing.assert_close(head.weight.grad, 2 * expected)
    kept = head.weight.grad.clone()

    opt = torch.optim.SGD(head.parameters(), lr=0.0)
    opt.zero_grad()  # set_to_none: the storage is free again and gets reused
    head.loss(x, y).backward()
    torch.testing.assert_close(head.weight.grad, expected)
    assert gc._cache.get(head.weight)[0].data_ptr() == head.weight.grad.data_ptr()
    torch.testing.assert_close(kept, 2 * expected)


def test_release_gives_the_memory_back(monkeypatch):
    monkeypatch.setattr(gc, "MIN_CACHED_BYTES", 0)
    w = torch.nn.Parameter(torch.randn(10, 4))
    v = torch.nn.Parameter(torch.randn(10, 4))
    del_a = gc.reusable_gradient(w, (10, 4), torch.float32)
    gc.reusable_gradient(v, (10, 4), torch.float32)
    del del_a
    gc.release_gradient_memory(w)
    assert gc._cache.get(w) is None and gc._cache.get(v) is not None
    gc.release_gradient_memory()
    assert gc._cache.get(v) is None
