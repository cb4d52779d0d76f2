"""Replica: one replica's state through a simulation and what it records.

Its parts: the arrivals not yet taken in, the waiting queue
(:mod:`~burstlab.sim.engine.queue`), the running batch, the KV blocks
(:mod:`~burstlab.sim.engine.kv`), the memoised costs, and the records a
:class:`~burstlab.sim.engine.result.SimResult` is made of (outcomes, token-time
spans, iteration ends, telemetry). :mod:`~burstlab.sim.engine.step` and
:mod:`~burstlab.sim.engine.fastpath` advance it; :class:`Engine
<burstlab.sim.engine.offline.Engine>` and :class:`OnlineEngine
<burstlab.sim.engine.online.OnlineEngine>` drive it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from burstlab.sim.engine.config import EngineConfig
from burstlab.sim.engine.costs import CostMemo
from burstlab.sim.engine.fastpath import Pending
from burstlab.sim.engine.kv import BlockPool
from burstlab.sim.engine.policies import sort_key, sort_keys, waiting_queue
from burstlab.sim.engine.request import Req
from burstlab.sim.engine.result import (
    LOAD_COLUMNS,
    OK,
    PENDING,
    TELEMETRY_COLUMNS,
    Listener,
    SimResult,
)


class Replica:
    """One replica's scheduler state; requests are indexed by id (arrival order)."""

    def __init__(
        self,
        cfg: EngineConfig,
        costs: CostMemo,
        *,
        fast: bool,
        arrival_s: Sequence[float] | np.ndarray,
        input_tokens: Sequence[int] | np.ndarray,
        output_tokens: Sequence[int] | np.ndarray,
        predicted: Sequence[int] | np.ndarray | None,
    ) -> None:
        self.cfg = cfg
        self.costs = costs
        self.fast = fast
        arrivals = np.asarray(arrival_s, dtype=np.float64)
        prompts = np.maximum(np.asarray(input_tokens, dtype=np.int64), 1)
        outputs = np.maximum(np.asarray(output_tokens, dtype=np.int64), 1)
        if arrivals.size and np.any(np.diff(arrivals) < 0):
            raise ValueError("arrival_s must be sorted")
        n = arrivals.size
        self.n = n
        keys = sort_keys(cfg, prompts, outputs, predicted)
        self.reqs = [
            Req(i, float(arrivals[i]), int(prompts[i]), int(outputs[i]), float(keys[i]))
            for i in range(n)
        ]
        for r in self.reqs:
            r.target = r.prompt
        self.next_arrival = 0
        self.queue = waiting_queue(cfg, self.reqs)
        self.running: list[Req] = []
        self.kv = BlockPool(cfg)
        self.outcome = np.full(n, PENDING, dtype=np.int8)
        self.first = np.full(n, np.nan)
        self.end = np.full(n, np.nan)
        self.iter_end: list[np.ndarray] = []
        self.iter_count = 0
        self.telemetry: list[tuple[float, ...]] = []
        self.listener: Listener | None = None
        #: Whether the listener hears of every token (a fleet reads them from the
        #: spans afterwards instead).
        self.tell = True
        #: A live run (:class:`~burstlab.sim.engine.online.OnlineEngine`): closed-form
        #: runs wait in ``pending`` and end at every known arrival and deadline.
        self.live = False
        self.pending: Pending | None = None

    @property
    def waiting_count(self) -> int:
        """Requests in the waiting queue (read by fleets and PD pools)."""
        return self.queue.count

    def enter(
        self,
        now: float,
        input_tokens: int,
        output_tokens: int,
        key: float | None,
        *,
        kv_ready: bool,
    ) -> Req:
        """A request arriving at ``now`` (a live replica's; see
        :meth:`~burstlab.sim.engine.online.OnlineEngine.add`), to be taken in."""
        rid = self.n
        if rid == self.outcome.size:
            grow = max(64, 2 * rid)
            self.outcome = np.concatenate([self.outcome, np.full(grow, PENDING, dtype=np.int8)])
            self.first = np.concatenate([self.first, np.full(grow, np.nan)])
            self.end = np.concatenate([self.end, np.full(grow, np.nan)])
            queue = self.queue
            queue.in_queue = np.concatenate([queue.in_queue, np.zeros(grow, dtype=bool)])
        prompt, output = max(int(input_tokens), 1), max(int(output_tokens), 1)
        arrival = max(now, self.reqs[-1].arrival if self.reqs else now)
        r = Req(rid, arrival, prompt, output, sort_key(self.cfg, prompt, output, key))
        r.target = prompt
        if kv_ready:
            r.swapped, r.transferred, r.generated = prompt, True, 1
        self.reqs.append(r)
        self.n += 1
        return r

    def settle(self, rid: int, code: int, when: float) -> None:
        """Request ``rid`` ended with outcome ``code`` at ``when`` (seconds)."""
        self.outcome[rid] = code
        self.end[rid] = when
        if self.listener is not None:
            self.listener(rid, code, when)

    def intake(self, t: float) -> None:
        """Arrivals up to ``t`` (seconds) join the queue or are rejected; waiting
        requests whose deadline is at or before ``t`` time out."""
        reqs = self.reqs
        queue = self.queue
        while self.next_arrival < self.n and reqs[self.next_arrival].arrival <= t:
            r = reqs[self.next_arrival]
            self.next_arrival += 1
            queue.arrive(r, self.settle)
        if queue.deadlines and queue.deadlines[0][0] <= t:
            queue.expire(t, self.settle)

    def emit(self, r: Req, a: int, b: int, first: float, end: float) -> None:
        """``r`` emitted tokens in iterations ``a..b-1``, the first at ``first`` and
        the last at ``end`` (seconds); the listener has already heard of them."""
        if r.spans and r.spans[-1][1] == a:
            r.spans[-1] = (r.spans[-1][0], b)
        else:
            r.spans.append((a, b))
        if r.generated == 0:
            self.first[r.rid] = first
        r.generated += b - a
        if r.generated >= r.output:
            self.kv.release(r)
            self.running.remove(r)
            self.settle(r.rid, OK, end)

    def record(self, start: float, end: float, iterations: int, batch: int, prefill: int) -> None:
        """A telemetry row for a step or a run (see :class:`SimResult`)."""
        kv = self.kv
        self.telemetry.append(
            (
                start,
                end,
                iterations,
                batch,
                prefill,
                len(self.running),
                self.queue.count,
                kv.total - kv.free,
                kv.preemptions,
            )
        )

    def result(self) -> SimResult:
        """What the simulation recorded, per request and per step."""
        iter_end = np.concatenate(self.iter_end) if self.iter_end else np.empty(0)
        spans = [r.spans for r in self.reqs]
        ptr = np.concatenate([[0], np.cumsum([len(s) for s in spans])]).astype(np.int64)
        flat = np.array([ab for s in spans for ab in s], dtype=np.int64).reshape(-1, 2)
        tokens = np.array([r.generated for r in self.reqs], dtype=np.int64)
        gaps = np.full(self.n, np.nan)
        for r in self.reqs:
            times = np.concatenate([iter_end[a:b] for a, b in r.spans]) if r.spans else ()
            if len(times) > 1:
                gaps[r.rid] = float(np.diff(times).max())
        rows = np.array(self.telemetry, dtype=np.float64).reshape(-1, len(TELEMETRY_COLUMNS))
        return SimResult(
            outcome=self.outcome[: self.n],
            first=self.first[: self.n],
            end=self.end[: self.n],
            preemptions=np.array([r.preemptions for r in self.reqs], dtype=np.int32),
            tokens=tokens,
            max_gap=gaps,
            admitted=np.full(self.n, np.nan),
            telemetry=rows,
            load=np.zeros((rows.shape[0], len(LOAD_COLUMNS))),
            iterations=self.iter_count,
            iter_end=iter_end,
            span_ptr=ptr,
            span_lo=flat[:, 0].copy(),
            span_hi=flat[:, 1].copy(),
        )
