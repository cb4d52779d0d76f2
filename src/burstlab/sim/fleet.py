"""Instances of one engine serving one workload together: the mechanism under every
cluster, disaggregated pools and autoscaling.

Each instance is a live engine (:class:`~burstlab.sim.engine.OnlineEngine`) with a
**role** and a **state**:

- roles: ``SERVE`` (colocated: prefill and decode), ``PREFILL`` (produces the first
  token, then hands the KV cache over the link) and ``DECODE`` (generates the
  remaining tokens without prefilling);
- states: ``STARTING`` (launched, takes work from ``ready_at``), ``ACTIVE``,
  ``DRAINING`` (takes no new work, finishes what it holds; then stops, or after a
  switch cost starts again in another role) and ``STOPPED``.

Events are processed in time order: arrivals (routed to an active ``SERVE`` or
``PREFILL`` instance), KV hand-offs (to the active ``DECODE`` instance with the
fewest outstanding requests) and a controller's ticks. Before each event every
instance is brought up to its time, prefill instances first, because they may
hand over something earlier; an instance with nothing due by then (its
:attr:`~burstlab.sim.engine.OnlineEngine.due`) is skipped, which changes nothing.
Every token time is exact: the live engines advance decode runs in closed form,
and their token times are gathered from their spans at the end.

A :class:`Controller` changes the fleet at its ticks (:meth:`Fleet.launch`,
:meth:`Fleet.drain`). The fleet never leaves a role that takes work without an
active instance: a controller that tries is refused. Instance time is counted
from launch to stop (booting and draining instances are paid for), up to the end
of the last request.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from burstlab.sim.engine import (
    OK,
    PENDING,
    Engine,
    EngineConfig,
    Listener,
    OnlineEngine,
    SimResult,
)
from burstlab.sim.engine.result import LOAD_COLUMNS, TELEMETRY_COLUMNS

SERVE, PREFILL, DECODE = 0, 1, 2

#: Active instances taking arrivals, active decode instances, whether any is booting
#: or draining, and every instance not stopped with its role (index order).
Roster = tuple[list[int], list[int], bool, list[tuple[OnlineEngine, int]]]
ROLE_NAMES = ("serve", "prefill", "decode")
STARTING, ACTIVE, DRAINING, STOPPED = 0, 1, 2, 3
STATE_NAMES = ("starting", "active", "draining", "stopped")

Router = Literal["round_robin", "least_outstanding", "kv_aware"]


@dataclass(slots=True)
class Instance:
    """One replica of the engine and where it is in its life (times in seconds)."""

    engine: OnlineEngine
    role: int
    state: int
    ready_at: float
    launched_s: float
    stopped_s: float = math.inf
    drain_from: float = 0.0
    next_role: int | None = None
    switch_s: float = 0.0

    @property
    def outstanding(self) -> int:
        return self.engine.run.outstanding

    @property
    def idle(self) -> bool:
        return self.outstanding == 0

    def last_busy(self) -> float:
        """End of its last iteration (0 when it never ran one)."""
        return self.engine.run.last_busy


class Controller(Protocol):
    """Changes a fleet at its ticks: the first at the first arrival, each returning
    the next's time (seconds)."""

    def tick(self, t: float, fleet: Fleet) -> float: ...


@dataclass(slots=True)
class LinkSpec:
    """The KV link between prefill and decode instances."""

    bandwidth: float  # bytes per second
    latency_s: float


class Fleet:
    """``run`` as :meth:`Engine.run` on instances of ``engine`` (see the module docstring).

    ``roles``: the instances at the first arrival (all active; instance time
    counts from there). ``link``: needed when any
    instance prefills for others. ``startup_s``: how long a launched instance
    boots before it takes work.
    """

    def __init__(
        self,
        engine: Engine,
        roles: list[int],
        *,
        router: Router = "least_outstanding",
        link: LinkSpec | None = None,
        controller: Controller | None = None,
        startup_s: float = 0.0,
    ) -> None:
        if not roles:
            raise ValueError("a fleet needs at least one instance")
        if PREFILL in roles and (DECODE not in roles or link is None):
            raise ValueError("prefill instances need decode instances and a link")
        self.engine = engine
        #: What the instances run: a copy of ``engine`` per run, so that its
        #: memoised costs serve one simulation (see :meth:`run`).
        self._live = Engine(engine.cfg, engine.cost, fast=engine.fast)
        self.cfg: EngineConfig = engine.cfg
        self.initial_roles = list(roles)
        self.router = router
        self.link = link
        self.controller = controller
        self.startup_s = startup_s
        self.instances: list[Instance] = []
        #: ``(seconds, instance, role, state)`` at every change, for reports.
        self.log: list[tuple[float, int, int, int]] = []
        #: Active instances taking arrivals and active decode instances, and whether
        #: any instance is booting or draining; None after any change (:meth:`_note`).
        self._roster: Roster | None = None
        self.horizon_s = 0.0

    # -- what controllers use ---------------------------------------------------

    def count(self, role: int, *states: int) -> int:
        """Instances of ``role`` in any of ``states`` (all live states by default)."""
        wanted = states or (STARTING, ACTIVE, DRAINING)
        return sum(1 for x in self.instances if x.role == role and x.state in wanted)

    def members(self, role: int, state: int = ACTIVE) -> list[int]:
        """Indexes of the instances of ``role`` in ``state``."""
        return [k for k, x in enumerate(self.instances) if x.role == role and x.state == state]

    def arrived(self, start: float, end: float) -> int:
        """Requests of the workload arriving in ``[start, end)``."""
        a = self._arrivals
        return int(np.searchsorted(a, end, "left") - np.searchsorted(a, start, "left"))

    def launch(self, t: float, role: int, ready_at: float | None = None) -> int:
        """Start an instance of ``role`` at ``t`` that takes work from ``ready_at``
        (default ``t + startup_s``); its index."""
        k = len(self.instances)
        self.gather.owner.append([])
        ready = t + self.startup_s if ready_at is None else ready_at
        state = ACTIVE if ready <= t else STARTING
        self.instances.append(
            Instance(
                OnlineEngine(self._live, self._listener(k), tokens=False), role, state, ready, t
            )
        )
        self._note(t, k)
        return k

    def drain(self, t: float, k: int, next_role: int | None = None, switch_s: float = 0.0) -> bool:
        """Take instance ``k`` out of service at ``t``: it finishes what it holds,
        then stops, or (``next_role``) starts again in that role ``switch_s``
        seconds later. A booting instance is cancelled at once. Refused (False)
        when it would leave its role with no active instance."""
        x = self.instances[k]
        if x.state == STARTING and next_role is None:
            x.state, x.stopped_s = STOPPED, t
            self._note(t, k)
            return True
        if x.state != ACTIVE or len(self.members(x.role)) <= 1:
            return False
        x.state, x.drain_from, x.next_role, x.switch_s = DRAINING, t, next_role, switch_s
        self._note(t, k)
        return True

    # -- the simulation -----------------------------------------------------------

    def run(
        self,
        arrival_s: np.ndarray,
        input_tokens: np.ndarray,
        output_tokens: np.ndarray,
    ) -> SimResult:
        """Simulate the workload (sorted arrivals, seconds); telemetry rows carry
        their instance."""
        n = len(arrival_s)
        self._arrivals = np.asarray(arrival_s, dtype=np.float64)
        self._prompts = np.maximum(np.asarray(input_tokens, dtype=np.int64), 1)
        self._outputs = np.maximum(np.asarray(output_tokens, dtype=np.int64), 1)
        self._prefill_only = np.zeros(n, dtype=bool)
        self.handoffs: list[tuple[float, int]] = []
        self.gather = Gather(n, 0)
        self.instances, self.log, self._roster = [], [], None
        self._live = Engine(self.engine.cfg, self.engine.cost, fast=self.engine.fast)
        self._turn = 0
        start = float(self._arrivals[0]) if n else 0.0
        for role in self.initial_roles:
            self.launch(start, role, ready_at=start)
        tick = start if self.controller is not None else math.inf
        i = 0
        while True:
            if i >= n and not self.handoffs:
                self._advance(math.inf, PREFILL)  # the last prefills may hand over more
                if not self.handoffs:
                    break
            t_arrival = float(self._arrivals[i]) if i < n else math.inf
            t_handoff = self.handoffs[0][0] if self.handoffs else math.inf
            t = min(t_arrival, t_handoff, tick)
            self._advance(t, PREFILL)
            if self.handoffs and self.handoffs[0][0] < t:
                continue  # a prefill instance just handed over something earlier
            # An instance is brought up to ``t`` when something reads or changes it:
            # all of them at a tick or while one boots or drains; otherwise the pool
            # the event goes to. (Stepping is the same whenever it is called.)
            if tick <= t or self._rosters()[2]:
                self._advance(t, SERVE, DECODE)
                self._settle(t)
            if tick <= t:
                assert self.controller is not None
                tick = max(self.controller.tick(t, self), math.nextafter(t, math.inf))
            elif self.handoffs and self.handoffs[0][0] <= t_arrival:
                self._advance(t, DECODE)
                at, g = heapq.heappop(self.handoffs)
                decoders = self._rosters()[1]
                if not decoders:
                    raise RuntimeError(f"no active decode instance for request {g}")
                k = min(decoders, key=lambda k: self.instances[k].outstanding)
                self._assign(k, g, at, kv_ready=True)
            else:
                self._advance(t, SERVE)
                self._assign(self._choose(self._takers(i), t), i, t)
                i += 1
        self._advance(math.inf, PREFILL, SERVE, DECODE)
        ends = self.gather.end[~np.isnan(self.gather.end)]
        self.horizon_s = max(float(self._arrivals[-1]) if n else 0.0, float(ends.max(initial=0.0)))
        self._settle(math.inf)
        return self.gather.result([x.engine for x in self.instances])

    def instance_seconds(self) -> float:
        """Instance time paid for, launch to stop, up to the last request's end."""
        return sum(
            max(0.0, min(x.stopped_s, self.horizon_s) - x.launched_s) for x in self.instances
        )

    def _listener(self, k: int) -> Listener:
        gather = self.gather

        def listen(rid: int, code: int, when: float) -> None:
            g = gather.owner[k][rid]
            if self._prefill_only[g] and code == OK and self._outputs[g] > 1:
                assert self.link is not None
                self._prefill_only[g] = False
                delay = self.link.latency_s + (
                    self._prompts[g] * self.cfg.kv_bytes_per_token / self.link.bandwidth
                )
                heapq.heappush(self.handoffs, (when + delay, g))
            else:
                gather.record(g, code, when)

        return listen

    def _advance(self, t: float, *roles: int) -> None:
        """Bring the live instances of ``roles`` up to ``t`` (seconds)."""
        for engine, role in self._rosters()[3]:
            if engine.due <= t and role in roles:
                engine.advance(t)

    def _settle(self, t: float) -> None:
        """Booted instances become active; drained ones stop or change role."""
        if not self._rosters()[2]:
            return  # none is booting or draining
        for k, x in enumerate(self.instances):
            if x.state == STARTING and x.ready_at <= t:
                x.state = ACTIVE
                self._note(x.ready_at, k)
            elif x.state == DRAINING and x.idle:
                done = max(x.drain_from, x.last_busy())
                if x.next_role is None:
                    x.state, x.stopped_s = STOPPED, done
                else:
                    x.role, x.next_role = x.next_role, None
                    x.state, x.ready_at = STARTING, done + x.switch_s
                self._note(done, k)
                if x.state == STARTING and x.ready_at <= t:
                    x.state = ACTIVE
                    self._note(x.ready_at, k)

    def _note(self, t: float, k: int) -> None:
        x = self.instances[k]
        self.log.append((t, k, x.role, x.state))
        self._roster = None

    def _rosters(self) -> Roster:
        """``_roster``, rebuilt if an instance changed role or state since."""
        if self._roster is None:
            xs = self.instances
            self._roster = (
                [k for k, x in enumerate(xs) if x.state == ACTIVE and x.role != DECODE],
                [k for k, x in enumerate(xs) if x.state == ACTIVE and x.role == DECODE],
                any(x.state in (STARTING, DRAINING) for x in xs),
                [(x.engine, x.role) for x in xs if x.state != STOPPED],
            )
        return self._roster

    def _takers(self, g: int) -> list[int]:
        """Active instances that take arrivals (colocated or prefill)."""
        takers = self._rosters()[0]
        if not takers:
            raise RuntimeError(f"no active instance for request {g}")  # drain() prevents it
        return takers

    def _choose(self, members: list[int], t: float) -> int:
        if self.router == "round_robin":
            self._turn += 1
            return members[(self._turn - 1) % len(members)]
        if self.router == "least_outstanding":
            return min(members, key=lambda k: self.instances[k].outstanding)
        return max(
            members,
            key=lambda k: (self.instances[k].engine.free_blocks(t), -self.instances[k].outstanding),
        )

    def _assign(self, k: int, g: int, t: float, *, kv_ready: bool = False) -> None:
        """Request ``g`` enters instance ``k`` at ``t``; a prefill instance produces
        only its first token."""
        self.gather.owner[k].append(g)
        prefill_only = self.instances[k].role == PREFILL
        self._prefill_only[g] = prefill_only
        output = 1 if prefill_only else int(self._outputs[g])
        self.instances[k].engine.add(t, int(self._prompts[g]), output, kv_ready=kv_ready)


class Gather:
    """What several live engines report, per request of the whole workload:
    ``owner[k][local id]`` maps engine ``k``'s request ids to workload indexes."""

    def __init__(self, n: int, engines: int) -> None:
        self.outcome = np.full(n, PENDING, dtype=np.int8)
        self.end = np.full(n, np.nan)
        self.owner: list[list[int]] = [[] for _ in range(engines)]

    def record(self, g: int, code: int, when: float) -> None:
        """Request ``g`` ended with ``code`` at ``when`` (seconds)."""
        self.outcome[g] = code
        self.end[g] = when

    def result(self, engines: list[OnlineEngine]) -> SimResult:
        """One result: ``iter_end`` is every engine's iteration ends one after the
        other, and a request's spans point into its engines' parts in time order;
        telemetry rows carry their engine's index in ``replica``."""
        return merge_results(self.outcome, self.end, self.owner, [e.result() for e in engines])


def merge_results(
    outcome: np.ndarray, end: np.ndarray, owner: list[list[int]], parts: list[SimResult]
) -> SimResult:
    """Several engines' results as one over the whole workload: ``owner[k][i]`` is
    the workload index of engine ``k``'s request ``i``; ``outcome`` and ``end`` are
    the workload's (a request may pass through a prefill and a decode engine).
    ``iter_end`` is the engines' one after the other; a request's spans point into
    them in time order; telemetry rows carry their engine's index in ``replica``."""
    n = outcome.size
    offsets = np.cumsum([0] + [p.iter_end.size for p in parts])
    iter_end = np.concatenate([p.iter_end for p in parts]) if parts else np.empty(0)
    preemptions = np.zeros(n, dtype=np.int32)
    tokens = np.zeros(n, dtype=np.int64)
    max_gap = np.full(n, np.nan)
    first = np.full(n, np.nan)
    admitted = np.full(n, np.nan)
    owners, lo, hi = [], [], []
    for k, part in enumerate(parts):
        g = np.asarray(owner[k], dtype=np.int64)
        if not g.size:
            continue
        np.add.at(preemptions, g, part.preemptions)
        np.add.at(tokens, g, part.tokens)
        max_gap[g] = np.fmax(max_gap[g], part.max_gap)
        first[g] = np.fmin(first[g], part.first)
        admitted[g] = np.fmin(admitted[g], part.admitted)
        counts = np.diff(part.span_ptr)
        owners.append(np.repeat(g, counts))
        lo.append(part.span_lo + offsets[k])
        hi.append(part.span_hi + offsets[k])
    span_owner = np.concatenate(owners) if owners else np.zeros(0, dtype=np.int64)
    span_lo = np.concatenate(lo) if lo else np.zeros(0, dtype=np.int64)
    span_hi = np.concatenate(hi) if hi else np.zeros(0, dtype=np.int64)
    # By request, then by the time of each span's first token.
    order = np.lexsort((iter_end[span_lo] if span_lo.size else span_lo, span_owner))
    span_owner, span_lo, span_hi = span_owner[order], span_lo[order], span_hi[order]
    span_ptr = np.searchsorted(span_owner, np.arange(n + 1)).astype(np.int64)
    rows = [
        np.column_stack([p.telemetry, p.load, np.full(p.telemetry.shape[0], k)])
        for k, p in enumerate(parts)
    ]
    width = len(TELEMETRY_COLUMNS) + len(LOAD_COLUMNS) + 1
    table = np.concatenate(rows) if rows else np.empty((0, width))
    table = table[np.lexsort(table.T[::-1])] if table.size else table.reshape(0, width)
    t_cols = len(TELEMETRY_COLUMNS)
    return SimResult(
        outcome=outcome,
        first=first,
        end=end,
        preemptions=preemptions,
        tokens=tokens,
        max_gap=max_gap,
        admitted=admitted,
        telemetry=table[:, :t_cols],
        load=table[:, t_cols:-1],
        iterations=sum(p.iterations for p in parts),
        steps=sum(p.steps for p in parts),
        iter_end=iter_end,
        span_ptr=span_ptr,
        span_lo=span_lo,
        span_hi=span_hi,
        replica=table[:, -1].astype(np.int32),
    )
