"""One serving-engine replica: continuous batching, chunked prefill, paged KV, preemption.

The scheduler follows vLLM's (V1) rules, one iteration at a time: at each
iteration's start, arrivals join the waiting queue (or are rejected) and
waiting requests time out; the running requests take their next prefill chunk
or decode token, preempting the most recently admitted until their KV blocks
fit; on a step that preempted nothing, waiting requests are admitted in the
scheduling policy's order; the iteration lasts what the cost model says of its
batch. While a decode-only batch cannot change, its iterations are advanced in
closed form, producing exactly the token times stepping would. :class:`Engine`
runs a whole workload; :class:`OnlineEngine` takes requests as they arrive.

Modules, each with one job:

- ``config``: :class:`EngineConfig`, the replica's scheduler and memory settings.
- ``costs``: the :class:`CostModel` interface and the per-simulation memo of its values.
- ``request``: one request's state inside a replica.
- ``queue``: the waiting queue (admission at arrival, queue timeouts, next in order).
- ``policies``: the scheduling policies, one waiting queue each (FCFS, shortest/longest first).
- ``kv``: paged KV blocks, preemption (recompute or swap) and swap-in.
- ``step``: one scheduler step: form the batch, cost the iteration, apply it.
- ``fastpath``: closed-form decode runs of an unchanged batch.
- ``replica``: a replica's state through one simulation and what it records.
- ``offline``: :class:`Engine`, a replica over a whole workload.
- ``online``: :class:`OnlineEngine`, a replica fed one request at a time.
- ``result``: :class:`SimResult`, outcome and event codes, the telemetry columns.
"""

from __future__ import annotations

from burstlab.sim.engine.config import EngineConfig
from burstlab.sim.engine.costs import CostModel
from burstlab.sim.engine.offline import Engine
from burstlab.sim.engine.online import OnlineEngine
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
