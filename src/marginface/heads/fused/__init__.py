"""The fused blockwise cross-entropy of the heads, one package (docs/large-class.md).

- ``spec``: ``LogitSpec``, ``RowFunction``, ``BatchStats``: what a head tells the loss;
- ``loss``: the autograd function and ``fused_cross_entropy``, the one entry point (one process
  or a process group of class shards);
- ``blocks``: the two passes over the classes, one *block* of classes at a time (the only word
  used for it), and the block-size rule;
- ``kernels``: the elementwise work per block (compiled with ``torch.compile`` on large CPU blocks);
- ``negatives``: the blocks of heads that change the non-target logits (running max, one pass);
- ``gradient_cache``: reuse of the weight gradient's memory between steps.
"""

from marginface.heads.fused.blocks import choose_block_size
from marginface.heads.fused.gradient_cache import release_gradient_memory
from marginface.heads.fused.loss import (
    fused_cross_entropy,
    fused_margin_cross_entropy,
    fused_softmax_cross_entropy,
    fused_sphereface_cross_entropy,
)
from marginface.heads.fused.spec import BatchStats, LogitSpec, RowFunction, batch_stats

__all__ = [
    "LogitSpec",
    "RowFunction",
    "BatchStats",
    "batch_stats",
    "choose_block_size",
    "fused_cross_entropy",
    "fused_margin_cross_entropy",
    "fused_sphereface_cross_entropy",
    "fused_softmax_cross_entropy",
    "release_gradient_memory",
]
