"""OnlineEngine: one replica fed a request at a time as requests arrive (a live server).

A live engine takes the same closed-form runs as :class:`Engine` (see
:mod:`~burstlab.sim.engine.fastpath`), planned when their batch forms and applied
lazily: a call to advance to ``now`` announces the tokens of the run's iterations
that start by ``now`` and applies the run only once its last iteration has
started. A request entering meanwhile cuts the run at the first iteration
boundary at or after its arrival, and so does any arrival or queue deadline
known when the run is planned, even when the batch is full: then every intake (a
rejection, a timeout) happens at the boundary where stepping would make it, and
what a router or controller reads between events is what stepping would show.
"""

from __future__ import annotations

import math

from burstlab.sim.engine.fastpath import commit, tell
from burstlab.sim.engine.kv import blocks_needed
from burstlab.sim.engine.offline import Engine
from burstlab.sim.engine.result import Listener, SimResult
from burstlab.sim.engine.step import step


class OnlineEngine:
    """The engine fed one request at a time, as requests arrive (a live server).

    Time is simulated seconds, supplied by the caller. :meth:`add` enters a
    request arriving at ``now``; :meth:`advance` runs every iteration that starts
    at or before ``now`` (the last one may end later: its tokens are announced
    ahead of their time, which is how a server can stream them on time) and
    returns the next iteration boundary, or None when idle. Scheduling is the
    same as :meth:`Engine.run`; with ``engine.fast``, decode runs are closed-form
    (see the module docstring) and the listener still hears of every token.

    ``tokens=False``: the listener hears only of requests' ends; token times are
    read afterwards from ``run`` (spans into ``run.iter_end``), which spares a
    call per token. ``due`` is the earliest ``now`` at which :meth:`advance` can
    change anything but token announcements and :meth:`free_blocks` (-inf after
    :meth:`add`, inf when idle): a caller that needs no announcements may skip
    calls before it.
    """

    def __init__(self, engine: Engine, listener: Listener, *, tokens: bool = True) -> None:
        self.run = engine.replica()
        self.run.listener = listener
        self.run.tell = tokens
        self.run.live = True
        self.t = 0.0
        self.now = 0.0
        self.due = -math.inf

    def add(
        self,
        now: float,
        input_tokens: int,
        output_tokens: int,
        key: float | None = None,
        *,
        kv_ready: bool = False,
    ) -> int:
        """Enter a request arriving at ``now`` (not before the previous one); its id.

        ``kv_ready``: the prompt's KV cache and first token come from a prefill
        instance (disaggregated serving): the request needs blocks for its prompt
        but no prefill, and decodes its remaining ``output_tokens - 1`` tokens.
        """
        run = self.run
        r = run.enter(now, input_tokens, output_tokens, key, kv_ready=kv_ready)
        arrival = r.arrival
        pending = run.pending
        if pending is not None:
            # The run ends at the first boundary at or after the arrival, but keeps
            # every iteration that has started by ``now`` (they ran without it).
            cut = int(pending.ends.searchsorted(arrival, side="left")) + 1
            keep = max(pending.started(now), cut)
            if keep < pending.ends.size:
                pending.ends = pending.ends[:keep]
        self.due = -math.inf
        return r.rid

    def advance(self, now: float) -> float | None:
        """Run the iterations starting at or before ``now``; the next boundary, or None."""
        run = self.run
        self.now = max(self.now, now)
        while True:
            pending = run.pending
            if pending is not None:
                started = pending.started(now)
                if started < pending.ends.size:
                    tell(run, pending, started)
                    boundary = float(pending.ends[started - 1])
                    run.intake(boundary)  # as stepping takes in at the next boundary
                    self.due = pending.last_start()
                    return boundary
                run.pending = None
                self.t = commit(run, pending)
            run.intake(self.t)
            if not run.running and not run.queue.count:
                if run.next_arrival < run.n:
                    self.t = max(self.t, run.reqs[run.next_arrival].arrival)
                    continue
                self.t = max(self.t, now)
                self.due = math.inf
                return None
            if self.t > now:
                self.due = self.t
                return self.t
            self.t = step(run, self.t)

    def free_blocks(self, now: float) -> int:
        """Free KV blocks once every iteration starting at or before ``now`` has
        reserved its tokens' blocks (as stepping would hold them then)."""
        run = self.run
        pending = run.pending
        if pending is None:
            return run.kv.free
        return run.kv.free - blocks_needed(pending.decode, pending.started(now), run.kv.size)

    def result(self) -> SimResult:
        """What this engine recorded so far (request ids are its own)."""
        return self.run.result()

    def state(self) -> dict[str, float]:
        """Running and waiting requests, KV blocks in use and preemptions so far."""
        run = self.run
        return {
            "running": len(run.running),
            "waiting": run.queue.count,
            "kv_blocks_used": run.cfg.num_blocks - self.free_blocks(self.now),
            "kv_blocks": run.cfg.num_blocks,
            "preemptions": run.kv.preemptions,
            "requests": run.n,
        }
