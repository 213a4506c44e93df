"""Old import path of ``marginface.heads.precision_matmul`` (kept for users' imports)."""

from marginface.heads.precision_matmul import MATMUL_DTYPES, precision_linear

__all__ = ["MATMUL_DTYPES", "precision_linear"]
