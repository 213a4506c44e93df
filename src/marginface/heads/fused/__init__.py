"""The fused blockwise cross-entropy of the heads, one package (docs/large-class.md).

- ``loss``: ``LogitSpec``, the autograd function and ``fused_cross_entropy``;
- ``blocks``: the two passes over the classes, one *block* of classes at a time (the only word
  used for it), and the block-size rule;
- ``kernels``: the elementwise work per block (compiled with ``torch.compile`` on large CPU blocks);
- ``gradient_cache``: reuse of the weight gradient's memory between steps.
"""

from marginface.heads.fused.blocks import choose_block_size
from marginface.heads.fused.gradient_cache import release_gradient_memory
from marginface.heads.fused.loss import (
    LogitSpec,
    fused_cross_entropy,
    fused_margin_cross_entropy,
    fused_softmax_cross_entropy,
    fused_sphereface_cross_entropy,
)

__all__ = [
    "LogitSpec",
    "choose_block_size",
    "fused_cross_entropy",
    "fused_margin_cross_entropy",
    "fused_sphereface_cross_entropy",
    "fused_softmax_cross_entropy",
    "release_gradient_memory",
]
