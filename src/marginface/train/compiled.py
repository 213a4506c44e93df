"""The compiled training step: ``torch.compile`` of the backbone, with an eager fallback.

``train.compile: true`` compiles the backbone (DDP wrapper included when distributed); AOTAutograd
compiles its backward with it, so forward and backward of the backbone (the step's cost: ~all of
the multiply-adds of MobileFaceNet at 112x96) run as inductor-generated code. The head's loss is
*not* traced: the fused loss is a custom autograd function that walks the classes block by block
and already runs its elementwise work through its own compiled kernels
(``marginface.heads.fused.kernels``); tracing it would graph-break at every block. The NaN check
between backbone and head needs the embeddings on the host anyway.

A compile failure (no C++ compiler, an unsupported op) raises at the first call: the wrapper
warns once, keeps the eager backbone for the rest of the run and the step goes on. The weights
are the eager module's own parameters, so checkpoints, ``model.safetensors`` and resume do not
see the compiler (a resumed compiled run recompiles; compiled arithmetic is not bit-identical to
eager, so exact resume is guaranteed within a path, not across paths).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["CompiledBackbone", "compile_module"]


def compile_module(module: nn.Module) -> Callable[..., Any]:
    """``torch.compile(module)`` with static shapes (every training batch has the same shape)."""
    return torch.compile(module, dynamic=False)


class CompiledBackbone:
    """Calls ``compiled(x)``; on its first failure warns once and calls ``module(x)`` from then.

    ``compiler`` makes the compiled callable (default :func:`compile_module`; tests pass one that
    fails).
    """

    def __init__(self, module: nn.Module,
                 compiler: Callable[[nn.Module], Callable[..., Any]] | None = None) -> None:
        self.module = module
        self.failed: str | None = None
        try:
            self._compiled: Callable[..., Any] | None = (compiler or compile_module)(module)
        except Exception as error:  # noqa: BLE001 - any compiler failure means: stay eager
            self._fail(error)

    @property
    def active(self) -> bool:
        """Whether calls still go through the compiled code."""
        return self._compiled is not None

    def _fail(self, error: BaseException) -> None:
        self._compiled = None
        self.failed = f"{type(error).__name__}: {error}"
        warnings.warn(f"marginface: train.compile failed ({self.failed}); training continues "
                      f"with the eager backbone", RuntimeWarning, stacklevel=3)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._compiled is not None:
            try:
                return self._compiled(x)
            except Exception as error:  # noqa: BLE001 - inductor/dynamo raise many types
                self._fail(error)
        return self.module(x)
