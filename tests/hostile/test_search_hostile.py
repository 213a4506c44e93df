"""Hostile galleries for exact_search: non-finite rows are named, not silently skipped."""

from __future__ import annotations

import pytest
import torch

from marginface.identify.search import exact_search


@pytest.mark.fault(kind="search gallery", fault="NaN in a gallery row",
                   behaviour="ValueError naming the gallery row")
@pytest.mark.parametrize("select", ["threshold", "topk"])
def test_nan_gallery_row_is_named(select):
    gallery = torch.nn.functional.normalize(torch.randn(40, 8), dim=1)
    gallery[23, 5] = float("nan")
    with pytest.raises(ValueError, match="gallery row 23 .*non-finite"):
        exact_search(gallery, torch.randn(3, 8), 5, gallery_block=16, select=select)


@pytest.mark.fault(kind="search gallery", fault="unknown top-k selection",
                   behaviour="ValueError naming select and its choices")
def test_unknown_select_is_named():
    gallery = torch.randn(10, 8)
    with pytest.raises(ValueError, match="select.*'heap'"):
        exact_search(gallery, torch.randn(2, 8), 3, select="heap")


@pytest.mark.fault(kind="search gallery", fault="NaN in a gallery row, bf16-filtered search",
                   behaviour="ValueError naming the gallery row")
def test_nan_gallery_row_is_named_by_the_bf16_filter():
    gallery = torch.nn.functional.normalize(torch.randn(40, 8), dim=1)
    gallery[23, 5] = float("nan")
    with pytest.raises(ValueError, match="gallery row 23 .*non-finite"):
        exact_search(gallery, torch.randn(3, 8), 5, gallery_block=16, product="bf16_filter")


@pytest.mark.fault(kind="search gallery", fault="bf16-filtered search of a bfloat16 gallery",
                   behaviour="ValueError naming product and the float32 gallery it needs")
def test_bf16_filter_on_a_bfloat16_gallery_is_named():
    gallery = torch.randn(10, 8).bfloat16()
    with pytest.raises(ValueError, match="product='bf16_filter' needs a float32 gallery"):
        exact_search(gallery, torch.randn(2, 8), 3, product="bf16_filter")
