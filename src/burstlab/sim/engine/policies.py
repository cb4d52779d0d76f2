"""Scheduling policies: the order in which waiting requests are admitted.

One waiting queue per ``EngineConfig.scheduler`` (as vLLM and Vidur keep one
scheduler each): first come first served (:class:`Fcfs`), and shortest- or
longest-request-first (:class:`ShortestFirst`, :class:`LongestFirst`) by a
length key (``EngineConfig.key``) with optional aging. Each gives a request's
priority in the queue's heap (smallest first) and, where the heap's order is
not the answer, picks the next request itself.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

import numpy as np

from burstlab.sim.engine.config import EngineConfig
from burstlab.sim.engine.queue import WaitingQueue
from burstlab.sim.engine.request import Req


class Fcfs(WaitingQueue):
    """First come, first served: by arrival time."""

    def priority(self, r: Req) -> float:
        return r.arrival


class ShortestFirst(WaitingQueue):
    """Smallest length key first. With ``aging`` (key units per second waited), a
    request's key falls the longer it waits, so priorities change with time and the
    best is found by a scan instead of the heap."""

    def priority(self, r: Req) -> float:
        return r.key

    def peek(self, now: float) -> Req | None:
        if self.aging > 0 and self.heap:
            return self._aged_best(now)
        return WaitingQueue.peek(self, now)

    def _aged_best(self, now: float) -> Req | None:
        best: Req | None = None
        best_key = math.inf
        in_queue = self.in_queue
        live = [e for e in self.heap if in_queue[e[2]]]
        self.heap = live
        heapq.heapify(live)
        reqs = self.reqs
        for _, arrival, rid in live:
            r = reqs[rid]
            k = r.key - self.aging * (now - arrival)
            if k < best_key or (k == best_key and best is not None and arrival < best.arrival):
                best, best_key = r, k
        return best


class LongestFirst(ShortestFirst):
    """Largest length key first: its requests' keys are negated (:func:`sort_keys`)."""


#: The waiting queue of each ``EngineConfig.scheduler``.
POLICIES: dict[str, type[WaitingQueue]] = {
    "fcfs": Fcfs,
    "srf": ShortestFirst,
    "lrf": LongestFirst,
}


def waiting_queue(cfg: EngineConfig, reqs: list[Req]) -> WaitingQueue:
    """The empty waiting queue of ``cfg.scheduler`` over ``reqs`` (see :class:`WaitingQueue`)."""
    return POLICIES[cfg.scheduler](cfg, reqs)


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
