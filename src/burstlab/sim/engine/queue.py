"""The waiting queue: admission at arrival, queue timeouts, and the next request in order.

Intake at an iteration's start ``t``: arrivals up to ``t`` join the waiting
queue in arrival order (:meth:`~burstlab.sim.engine.replica.Replica.intake`),
unless the queue already holds ``queue_cap`` requests at that arrival's time
(then it is rejected at its arrival time, ``http_429``). A request that could
never run is rejected at its arrival too: its whole context (``prompt + output -
1`` KV tokens) needs more blocks than the cache has, or, without chunked
prefill, its prompt exceeds the token budget (vLLM refuses both up front:
``max_model_len`` and ``max_num_batched_tokens``). A waiting request still
waiting ``queue_timeout_s`` after it arrived fails at exactly that time
(``timeout``, ``queue``). The order in which waiting requests are admitted is
the scheduling policy's: each policy is a kind of waiting queue
(:mod:`~burstlab.sim.engine.policies`).
"""

from __future__ import annotations

import heapq
from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np

from burstlab.sim.engine.config import EngineConfig
from burstlab.sim.engine.request import Req
from burstlab.sim.engine.result import REJECTED, TIMED_OUT

#: ``settle(request id, outcome code, seconds)``: a request ended (the replica's
#: records). Passed per call, so that a queue holds no reference to its replica.
Settle = Callable[[int, int, float], None]


class WaitingQueue(ABC):
    """Requests waiting to run (new, or preempted), smallest :meth:`priority` first.

    ``heap`` holds ``(priority, arrival, rid)`` and may keep entries of requests
    that have left (``in_queue[rid]`` is False); ``count`` is how many wait.
    ``reqs`` are every request by id. A scheduling policy gives :meth:`priority` and
    may pick otherwise than the heap does (:meth:`peek`).
    """

    def __init__(self, cfg: EngineConfig, reqs: list[Req]) -> None:
        self.reqs = reqs
        self.heap: list[tuple[float, float, int]] = []
        self.in_queue = np.zeros(len(reqs), dtype=bool)
        self.count = 0
        self.deadlines: list[tuple[float, int]] = []  # heap of (deadline, rid)
        self.cap = cfg.queue_cap
        self.timeout = cfg.queue_timeout_s
        #: The most prompt tokens a request may have (no limit with chunked prefill).
        self.max_prompt = None if cfg.chunked_prefill else cfg.max_batched_tokens
        self.block_size = cfg.block_size
        self.num_blocks = cfg.num_blocks
        #: Priority aging, in key units per second waited (length-first policies).
        self.aging = cfg.aging

    @abstractmethod
    def priority(self, r: Req) -> float:
        """``r``'s place in the heap, smallest first (ties: earliest arrival)."""

    def arrive(self, r: Req, settle: Settle) -> None:
        """``r`` arrives: it waits, or is rejected at its arrival time (``settle`` is
        told of it, and first of the timeouts up to then)."""
        self.expire(r.arrival, settle)
        cap = self.cap
        if (cap is not None and self.count >= cap) or self.never_fits(r):
            settle(r.rid, REJECTED, r.arrival)
            return
        self.push(r)
        if self.timeout is not None:
            heapq.heappush(self.deadlines, (r.arrival + self.timeout, r.rid))

    def never_fits(self, r: Req) -> bool:
        """Whether ``r`` could never run: its whole context needs more blocks than the
        cache has, or (without chunked prefill) its prompt exceeds the token budget."""
        if -(-(r.prompt + r.output - 1) // self.block_size) > self.num_blocks:
            return True
        return self.max_prompt is not None and not r.transferred and r.prompt > self.max_prompt

    def push(self, r: Req) -> None:
        """``r`` waits (on arrival, or again after a preemption)."""
        heapq.heappush(self.heap, (self.priority(r), r.arrival, r.rid))
        self.in_queue[r.rid] = True
        self.count += 1

    def peek(self, now: float) -> Req | None:  # noqa: ARG002 (a policy's may use it)
        """The request to admit next at ``now`` (seconds), still waiting; None if none.
        Here the first in the heap's order."""
        heap = self.heap
        in_queue = self.in_queue
        while heap:
            rid = heap[0][2]
            if in_queue[rid]:
                return self.reqs[rid]
            heapq.heappop(heap)
        return None

    def take(self, r: Req) -> None:
        """``r`` leaves the queue (admitted, failed or timed out)."""
        self.in_queue[r.rid] = False
        self.count -= 1

    def expire(self, until: float, settle: Settle) -> None:
        """Waiting requests whose queue deadline is at or before ``until`` fail then
        (``settle`` is told of each)."""
        deadlines = self.deadlines
        while deadlines and deadlines[0][0] <= until:
            deadline, rid = heapq.heappop(deadlines)
            if self.in_queue[rid] and self.reqs[rid].generated == 0:
                self.take(self.reqs[rid])
                settle(rid, TIMED_OUT, deadline)
