"""A linear cost model and random request arrays for engine, cluster and plan tests."""

from __future__ import annotations

import numpy as np


class LinearCost:
    """c0 + per prefill token + per attention pair + per decode seq + per context token."""

    def __init__(
        self,
        c0: float = 0.004,
        cp: float = 5e-5,
        ca: float = 1e-9,
        cd: float = 2e-5,
        cc: float = 2e-8,
    ) -> None:
        self.c = (c0, cp, ca, cd, cc)

    def iteration_s(self, pt, pa, ds, dc):  # type: ignore[no-untyped-def]
        c0, cp, ca, cd, cc = self.c
        return (
            c0
            + cp * np.asarray(pt)
            + ca * np.asarray(pa)
            + cd * np.asarray(ds)
            + cc * np.asarray(dc)
        )


def workload(n: int, rate: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` requests at ``rate`` per second (Gamma(0.5) gaps): arrivals, prompts, outputs."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.gamma(0.5, 1 / (0.5 * rate), n))
    prompts = rng.integers(20, 1500, n)
    outputs = rng.integers(1, 400, n)
    return arrivals, prompts, outputs
