"""One serving-engine replica: continuous batching, chunked prefill, paged KV, preemption.

The scheduler follows vLLM's (V1) rules, one iteration at a time: at each
iteration's start, arrivals join the waiting queue (or are rejected) and
waiting requests time out; the running requests take their next prefill chunk
or decode token, preempting the most recently admitted until their KV blocks
fit; on a step that preempted nothing, waiting requests are admitted in the
scheduling policy's order; the iteration lasts what the cost model says of its
batch. The kernel steps every iteration in compiled code. :class:`Engine`
runs a whole workload; :class:`OnlineEngine` takes requests as they arrive.

Modules, each with one job:

- ``config``: :class:`EngineConfig`, the replica's scheduler and memory settings.
- ``kernel``: the compiled scheduler (numba): every step of a replica on arrays.
- ``costs``: the :class:`CostModel` interface and the kernel's form of a model.
- ``policies``: the scheduling policies' sort keys.
- ``replica``: a replica's arrays through one simulation, grown and read out.
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
    CLIENT_TIMEOUT,
    LOAD_COLUMNS,
    OK,
    PENDING,
    PREEMPTED,
    REJECTED,
    TELEMETRY_COLUMNS,
    TIMED_OUT,
    TOKEN,
    Listener,
    SimResult,
)

__all__ = [
    "CLIENT_TIMEOUT",
    "LOAD_COLUMNS",
    "OK",
    "PENDING",
    "PREEMPTED",
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
