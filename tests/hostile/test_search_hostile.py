"""Hostile galleries for exact_search: non-finite rows are named, not silently skipped."""

from __future__ import annotations

import pytest
import torch

from marginface.identify.search import exact_search


@pytest.mark.fault(kind="search gallery", fault="NaN in a gallery row",
                   behaviour="ValueError naming the gallery row")
@pytest.mark.parametrize("product", ["numpy", "torch"])
def test_nan_gallery_row_is_named(product):
    gallery = torch.nn.functional.normalize(torch.randn(40, 8), dim=1)
    gallery[23, 5] = float("nan")
    with pytest.raises(ValueError, match="gallery row 23 .*non-finite"):
        exact_search(gallery, torch.randn(3, 8), 5, gallery_block=16, product=product,
                     select="threshold")


@pytest.mark.fault(kind="search gallery", fault="unknown or mismatched product backend",
                   behaviour="ValueError naming the product and the gallery dtype")
def test_numpy_product_needs_float32():
    gallery = torch.randn(10, 8).bfloat16()
    with pytest.raises(ValueError, match="product must be .*'numpy'.*bfloat16"):
        exact_search(gallery, torch.randn(2, 8), 3, product="numpy")
    with pytest.raises(ValueError, match="product must be .*'blas'"):
        exact_search(gallery.float(), torch.randn(2, 8), 3, product="blas")
