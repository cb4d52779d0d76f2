"""Closed-form decode runs: many decode-only iterations of an unchanged batch at once.

While the batch is decode-only and nothing can change it (no completion, no
block allocation failure, no admissible arrival, no preemption on the step),
the next ``k`` iterations differ only in the context length, which grows by the
batch size each time: their latencies are one vectorised cost-model call and
their end times a cumulative sum. Every token time is still produced, exactly as
iterating one step at a time would (``fast=False`` does that, and the tests
compare the two).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from burstlab.sim.engine.kv import blocks_needed
from burstlab.sim.engine.request import Req
from burstlab.sim.engine.result import TOKEN

if TYPE_CHECKING:
    from burstlab.sim.engine.replica import Replica


@dataclass(slots=True)
class Pending:
    """A closed-form decode run: ``decode`` (fixed for the whole run) decodes one
    token per iteration; iteration ``j`` starts at ``t`` (``j = 0``) or ``ends[j-1]``
    and ends at ``ends[j]`` (seconds). Blocks for the first iteration's tokens are
    reserved; ``kv`` and ``blocks`` of each request stay as before the run until
    it is applied (:func:`commit`)."""

    t: float
    decode: list[Req]
    ends: np.ndarray
    #: Iterations whose tokens a live engine's listener has heard of.
    told: int = 0

    def started(self, now: float) -> int:
        """Iterations of the run that start at or before ``now`` (at least 1)."""
        ends = self.ends
        return min(ends.size, 1 + int(ends.searchsorted(now, side="right")))

    def last_start(self) -> float:
        """Start of the run's last iteration (seconds)."""
        return float(self.ends[-2]) if self.ends.size > 1 else self.t


def run_length(rep: Replica, decode: list[Req]) -> int:
    """How many iterations the current decode-only batch can run unchanged
    (upper bound before arrivals, which :func:`plan` checks)."""
    k = min(r.output - r.generated for r in decode)
    if k <= 1:
        return k
    # block growth: the j-th further token of a request with kv c and b blocks
    # needs ceil((c + j) / size) - b new blocks; find the largest k that fits.
    # This step's token is already reserved; iteration j (1-based) adds j tokens
    # in all. Most runs fit whole (checked in plain Python: batches are small).
    size = rep.kv.size
    free = rep.kv.free
    if blocks_needed(decode, k, size) <= free:
        return k
    kv = np.array([r.kv for r in decode], dtype=np.int64)
    held = np.array([r.blocks for r in decode], dtype=np.int64)

    def need(j: int) -> int:
        return int(np.maximum(-(-(kv + j) // size) - held, 0).sum())

    lo, hi = 1, k  # need(lo) fits (reserved), need(hi) does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if need(mid) <= free:
            lo = mid
        else:
            hi = mid
    return lo


def plan(rep: Replica, t: float, decode: list[Req], k: int) -> Pending:
    """The run of at most ``k`` decode iterations from ``t``: one vectorised
    cost-model call, ends by cumulative sum, cut where the batch may change."""
    batch = len(decode)
    ctx0 = sum(r.kv for r in decode)
    ends = t + rep.costs.decode_run(batch, ctx0, k).cumsum()
    # Below max_num_seqs (always, in a live run), an arrival (which may be
    # admitted) or a queue deadline (which may unblock the queue's head) cuts the
    # run at the first iteration boundary at or after it.
    if rep.live or len(rep.running) < rep.cfg.max_num_seqs:
        soon = math.inf
        if rep.next_arrival < rep.n:
            soon = rep.reqs[rep.next_arrival].arrival
        deadlines = rep.queue.deadlines
        if deadlines:
            soon = min(soon, deadlines[0][0])
        if soon < math.inf:
            cut = int(ends.searchsorted(soon, side="left")) + 1
            ends = ends[: max(1, min(k, cut))]
    return Pending(t, decode, ends)


def tell(rep: Replica, run: Pending, upto: int) -> None:
    """The listener hears of the tokens of the run's iterations before ``upto``."""
    listener = rep.listener
    if listener is not None and rep.tell:
        for when in run.ends[run.told : upto].tolist():
            for r in run.decode:
                listener(r.rid, TOKEN, when)
    run.told = max(run.told, upto)


def commit(rep: Replica, run: Pending) -> float:
    """Apply a whole run (blocks, tokens, completions, telemetry); its end."""
    decode, ends = run.decode, run.ends
    k = ends.size
    if rep.listener is not None:
        tell(rep, run, k)
    idx = rep.iter_count
    rep.iter_end.append(ends)
    rep.iter_count += k
    end = float(ends[-1])
    first = float(ends[0])
    grow = rep.kv.grow
    emit = rep.emit
    for r in decode:
        # Blocks for every token of the run (the first was reserved by the step;
        # the run's length was chosen so that they are free).
        grow(r, k)
        r.kv += k
        emit(r, idx, idx + k, first, end)
    if k > 1:
        # What stepping would have taken in by the last iteration's start, so that
        # the row's queue length is the same (outcomes do not depend on it).
        rep.intake(float(ends[-2]))
    rep.record(run.t, end, k, len(decode), 0)
    return end
