"""Maximum-likelihood Gamma fits, vectorised over many samples at once.

The shape ``k`` solves ``ln k - digamma(k) = ln(mean x) - mean(ln x)``; the
scale is ``mean x / k``. Starting from the Minka/Choi-Wette closed-form
approximation, a few Newton steps on all windows at once reach full precision,
so fitting 15,000 windows costs a handful of numpy passes, not 15,000 solver
calls.
"""

from __future__ import annotations

import numpy as np
from scipy import special


def gamma_mle(
    mean: np.ndarray, mean_log: np.ndarray, *, steps: int = 6
) -> tuple[np.ndarray, np.ndarray]:
    """Shape and scale per sample from its ``mean(x)`` and ``mean(ln x)`` (x > 0).

    Samples whose statistics are degenerate (fewer than two distinct values:
    ``ln mean == mean log``) get NaN.
    """
    mean = np.asarray(mean, dtype=np.float64)
    s = np.log(mean) - np.asarray(mean_log, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = (3.0 - s + np.sqrt((s - 3.0) ** 2 + 24.0 * s)) / (12.0 * s)
        for _ in range(steps):
            f = np.log(k) - special.digamma(k) - s
            df = 1.0 / k - special.polygamma(1, k)
            k = np.maximum(k - f / df, k / 10.0)
    k = np.where(s > 1e-12, k, np.nan)
    return k, mean / k
