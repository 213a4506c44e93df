"""Comparing two verifiers on the same pairs: per-pair decisions, McNemar's test, Wilson intervals.

On LFW's 600 pairs a gap of 2-3 points between two models is within noise; these say whether it
is:

- :func:`pair_decisions`: whether each pair was judged right under the k-fold protocol (the pair's
  threshold is the one chosen on the other folds, as ``verify_scores`` does);
- :func:`mcnemar_exact`: McNemar's paired test, exact (binomial) form: with ``b`` pairs only model
  A got right and ``c`` only B, under H0 (equal accuracy) b ~ Binomial(b + c, 1/2); two-sided
  p = min(1, 2 P(X <= min(b, c))) (McNemar 1947; the exact form for small b + c);
- :func:`wilson_interval`: the Wilson score interval of a proportion k/n (Wilson 1927),
  ``(p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["pair_decisions", "mcnemar_exact", "wilson_interval"]


def pair_decisions(scores: np.ndarray, issame: np.ndarray, folds: np.ndarray,
                   fold_thresholds: list[float]) -> np.ndarray:
    """Bool (N,): pair i judged right, ``score > threshold of its fold`` == same."""
    scores = np.asarray(scores, dtype=np.float64)
    folds = np.asarray(folds)
    fold_ids = np.unique(folds)
    if len(fold_ids) != len(fold_thresholds):
        raise ValueError(f"{len(fold_ids)} folds but {len(fold_thresholds)} thresholds")
    thresholds = np.asarray(fold_thresholds, dtype=np.float64)[np.searchsorted(fold_ids, folds)]
    return (scores > thresholds) == np.asarray(issame, dtype=bool)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for ``b`` and ``c`` discordant pairs."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2.0 ** n
    return min(1.0, 2.0 * tail)


def wilson_interval(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval of k successes in n (default 95 %)."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    p = k / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    scale = 1 + z * z / n
    return max(0.0, (centre - half) / scale), min(1.0, (centre + half) / scale)
