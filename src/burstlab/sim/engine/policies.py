"""Scheduling policies' sort keys: the order in which waiting requests are admitted.

First come, first served (``fcfs``) orders by arrival; shortest- and
longest-request-first (``srf``, ``lrf``) by a length key (``EngineConfig.key``),
smallest first, negated for longest-first, with optional aging (key units per
second waited). The kernel (:mod:`~burstlab.sim.engine.kernel`) keeps the queue;
this module gives each request its key.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from burstlab.sim.engine.config import EngineConfig

#: The kernel's code of each ``EngineConfig.scheduler``.
POLICY_CODES = {"fcfs": 0, "srf": 1, "lrf": 2}


def _sign(cfg: EngineConfig) -> float:
    return -1.0 if cfg.scheduler == "lrf" else 1.0


def sort_keys(
    cfg: EngineConfig,
    prompts: np.ndarray,
    outputs: np.ndarray,
    predicted: Sequence[int] | np.ndarray | None,
) -> np.ndarray:
    """Every request's length key in tokens (``cfg.key``; the true output length
    where no prediction is given), negated for longest-first."""
    source: np.ndarray = {
        "input": prompts,
        "output": outputs,
        "total": prompts + outputs,
        "predicted": np.asarray(predicted if predicted is not None else outputs),
    }[cfg.key].astype(np.float64)
    return _sign(cfg) * source


def sort_key(cfg: EngineConfig, prompt: int, output: int, predicted: float | None) -> float:
    """One request's length key, as :func:`sort_keys` gives it."""
    by = cfg.key
    if by == "input":
        key: float = prompt
    elif by == "total":
        key = prompt + output
    elif by == "predicted" and predicted is not None:
        key = predicted
    else:  # the output length, or no prediction given
        key = output
    return _sign(cfg) * float(key)
