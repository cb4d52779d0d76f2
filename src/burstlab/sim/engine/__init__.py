"""One serving-engine replica: continuous batching, chunked prefill, paged KV, preemption.

The scheduler follows vLLM's (V1) rules, one iteration at a time:

1. **Intake** at the iteration's start ``t``: arrivals up to ``t`` join the waiting
   queue in arrival order, unless the queue already holds ``queue_cap`` requests at
   that arrival's time (then it is rejected at its arrival time, ``http_429``).
   A request that could never run is rejected at its arrival too: its whole
   context (``prompt + output - 1`` KV tokens) needs more blocks than the cache
   has, or, without chunked prefill, its prompt exceeds the token budget (vLLM
   refuses both up front: ``max_model_len`` and ``max_num_batched_tokens``).
   A waiting request still waiting ``queue_timeout_s`` after it arrived fails at
   exactly that time (``timeout``, ``queue``).
2. **Running first**, in admission order: a request still prefilling takes a
   chunk of ``min(remaining prefill, token budget)`` tokens (the budget is
   ``max_batched_tokens``); a decoding request takes one token. A request needs
   ``ceil(kv_tokens / block_size)`` KV blocks; when a step would need more
   blocks than are free, the most recently admitted running request is
   preempted (recompute: its blocks are freed and it re-queues at its own
   priority, to prefill its prompt and the tokens generated so far again; swap:
   its KV goes to host memory and comes back at PCIe speed when it is
   re-admitted) until the step fits.
3. **Admission**, only on a step that preempted nothing: waiting requests in the
   scheduler's order (FCFS by arrival; shortest- or longest-request-first by a
   length key, with optional aging) while fewer than ``max_num_seqs`` run,
   budget remains and their first chunk's blocks are free. Without chunked
   prefill a request is admitted only if its whole prompt fits the budget.
4. The iteration lasts ``cost.iteration_s(...)`` of its batch. At its end every
   decoding request emits a token, and a request whose prefill completes emits
   one (the first token, or the next one after a recompute); a request that has
   emitted all its output tokens completes and frees its blocks.

**Fast path.** While the batch is decode-only and nothing can change it (no
completion, no block allocation failure, no admissible arrival, no preemption
on the step), the next ``k`` iterations differ only in the context length,
which grows by the batch size each time: their latencies are one vectorised
cost-model call and their end times a cumulative sum. Every token time is
still produced, exactly as iterating one step at a time would (``fast=False``
does that, and the tests compare the two).

**Live runs** (:class:`OnlineEngine`) take the same closed-form runs, planned
when their batch forms and applied lazily: a call to advance to ``now`` announces
the tokens of the run's iterations that start by ``now`` and applies the run only
once its last iteration has started. A request entering meanwhile cuts the run
at the first iteration boundary at or after its arrival, and so does any
arrival or queue deadline known when the run is planned, even when the batch is
full: then every intake (a rejection, a timeout) happens at the boundary where
stepping would make it, and what a router or controller reads between events
is what stepping would show.

Modules:

- ``config``: :class:`EngineConfig`, the replica's scheduler and memory settings.
- ``costs``: the :class:`CostModel` interface and the per-simulation memo of its values.
- ``request``: one request's state inside a replica.
- ``replica``: a replica through one simulation, and :class:`Engine`.
- ``online``: :class:`OnlineEngine`, a replica fed one request at a time.
- ``result``: :class:`SimResult`, outcome and event codes, the telemetry columns.
"""

from __future__ import annotations

from burstlab.sim.engine.config import EngineConfig
from burstlab.sim.engine.costs import CostModel
from burstlab.sim.engine.online import OnlineEngine
from burstlab.sim.engine.replica import Engine
from burstlab.sim.engine.result import (
    OK,
    PENDING,
    REJECTED,
    TELEMETRY_COLUMNS,
    TIMED_OUT,
    TOKEN,
    Listener,
    SimResult,
)

__all__ = [
    "OK",
    "PENDING",
    "REJECTED",
    "TELEMETRY_COLUMNS",
    "TIMED_OUT",
    "TOKEN",
    "CostModel",
    "Engine",
    "EngineConfig",
    "Listener",
    "OnlineEngine",
    "SimResult",
]
