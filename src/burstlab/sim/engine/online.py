"""OnlineEngine: one replica fed a request at a time as requests arrive (a live server).

The kernel steps a live replica exactly as it steps a whole workload: a call to
advance to ``now`` runs every iteration that starts by ``now`` (the last one may
end later: its tokens and completions are told ahead of their time, which is how a
server can stream them on time). A request entering meanwhile joins at the next
iteration boundary, as it would on a real engine, and what a router or controller
reads between events is the state after the iterations started so far.
"""

from __future__ import annotations

import math

from burstlab.sim.engine import kernel as k
from burstlab.sim.engine.offline import Engine
from burstlab.sim.engine.replica import END_EVENTS, TOKEN_EVENTS
from burstlab.sim.engine.result import Listener, SimResult


class OnlineEngine:
    """The engine fed one request at a time, as requests arrive (a live server).

    Time is simulated seconds, supplied by the caller. :meth:`add` enters a
    request arriving at ``now``; :meth:`advance` runs every iteration that starts
    at or before ``now`` and returns the next iteration boundary, or None when
    idle. Scheduling is the same as :meth:`Engine.run`.

    ``tokens=False``: the listener hears only of requests' ends; token times are
    read afterwards from :meth:`result`, which spares a call per token. ``due`` is
    the earliest ``now`` at which :meth:`advance` can change anything (-inf after
    :meth:`add`, inf when idle): a caller may skip calls before it.
    """

    def __init__(self, engine: Engine, listener: Listener, *, tokens: bool = True) -> None:
        self.run = engine.replica(events=TOKEN_EVENTS if tokens else END_EVENTS)
        self.run.listener = listener
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
        rid = self.run.enter(now, input_tokens, output_tokens, key, kv_ready=kv_ready)
        self.due = -math.inf
        return rid

    def advance(self, now: float) -> float | None:
        """Run the iterations starting at or before ``now``; the next boundary, or None."""
        run = self.run
        self.now = max(self.now, now)
        if run.advance(now) == k.IDLE:
            run.sf[k.T] = max(run.sfv[k.T], now)
            self.due = math.inf
            return None
        due = self.due = run.sfv[k.T]
        return due

    def free_blocks(self, now: float) -> int:  # noqa: ARG002 (stepped up to the last call)
        """Free KV blocks after every iteration started so far."""
        return self.run.free_blocks

    def result(self) -> SimResult:
        """What this engine recorded so far (request ids are its own)."""
        return self.run.result()

    def state(self) -> dict[str, float]:
        """Running and waiting requests, KV blocks in use and preemptions so far."""
        run = self.run
        return {
            "running": run.running_count,
            "waiting": run.waiting_count,
            "kv_blocks_used": run.cfg.num_blocks - run.free_blocks,
            "kv_blocks": run.cfg.num_blocks,
            "preemptions": run.preemptions,
            "requests": run.n,
        }
