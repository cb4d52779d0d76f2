"""N replicas of one engine behind a router, simulated together in arrival order.

Each arrival first brings every replica up to its time (their iterations that
start before it), then goes to the replica the router picks:

- ``round_robin``: replicas in turn;
- ``least_outstanding``: the fewest running plus waiting requests (join the
  shortest queue);
- ``kv_aware``: the most free KV blocks, ties to the fewest outstanding.

Replicas step one iteration at a time (the live engine), so every token time is
exact; the result has the same shape as one engine's.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from burstlab.sim.engine import (
    PENDING,
    TOKEN,
    Engine,
    EngineConfig,
    Listener,
    OnlineEngine,
    SimResult,
)

Router = Literal["round_robin", "least_outstanding", "kv_aware"]


class ClusterConfig(BaseModel):
    """How many replicas, and how requests are spread over them."""

    model_config = ConfigDict(extra="forbid")

    replicas: int = Field(1, ge=1)
    router: Router = "round_robin"


class Cluster:
    """``replicas`` copies of ``engine`` behind ``router``; ``run`` as :meth:`Engine.run`."""

    def __init__(self, engine: Engine, config: ClusterConfig) -> None:
        self.engine = engine
        self.config = config
        self.cfg: EngineConfig = engine.cfg

    def run(
        self,
        arrival_s: np.ndarray,
        input_tokens: np.ndarray,
        output_tokens: np.ndarray,
    ) -> SimResult:
        """Simulate the workload on the cluster; telemetry rows carry their replica."""
        count = self.config.replicas
        gather = Gather(len(arrival_s), count)

        def listener(k: int) -> Listener:
            return lambda rid, code, when: gather.record(gather.owner[k][rid], code, when)

        replicas = [OnlineEngine(self.engine, listener(k)) for k in range(count)]
        for g in range(len(arrival_s)):
            t = float(arrival_s[g])
            for replica in replicas:
                replica.advance(t)
            k = self._route(g, replicas)
            gather.owner[k].append(g)
            replicas[k].add(t, int(input_tokens[g]), int(output_tokens[g]))
        for replica in replicas:
            replica.advance(math.inf)
        return gather.result(replicas)

    def _route(self, g: int, replicas: list[OnlineEngine]) -> int:
        router = self.config.router
        if router == "round_robin":
            return g % len(replicas)
        loads = [len(r.run.running) + r.run.waiting_count for r in replicas]
        if router == "least_outstanding":
            return int(np.argmin(loads))
        free = [r.run.free for r in replicas]
        return max(range(len(replicas)), key=lambda k: (free[k], -loads[k]))


class Gather:
    """What several live engines report, per request of the whole workload:
    ``owner[k][local id]`` maps engine ``k``'s request ids to workload indexes."""

    def __init__(self, n: int, engines: int) -> None:
        self.tokens: list[list[float]] = [[] for _ in range(n)]
        self.outcome = np.full(n, PENDING, dtype=np.int8)
        self.end = np.full(n, np.nan)
        self.owner: list[list[int]] = [[] for _ in range(engines)]

    def record(self, g: int, code: int, when: float) -> None:
        """Request ``g`` emitted a token (``TOKEN``) or ended with ``code`` at ``when``."""
        if code == TOKEN:
            self.tokens[g].append(when)
        else:
            self.outcome[g] = code
            self.end[g] = when

    def result(self, engines: list[OnlineEngine]) -> SimResult:
        """One result; telemetry rows carry their engine's index."""
        return build_result(self.tokens, self.outcome, self.end, engines, self.owner)


def build_result(
    tokens: list[list[float]],
    outcome: np.ndarray,
    end: np.ndarray,
    replicas: list[OnlineEngine],
    owner: list[list[int]],
) -> SimResult:
    """One result from several live engines: per-request tokens and outcomes as
    gathered by their listeners, ``owner[k][local id]`` = the request's index."""
    lengths = np.array([len(t) for t in tokens], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    flat = np.array([x for t in tokens for x in t], dtype=np.float64)
    first = np.array([t[0] if t else np.nan for t in tokens])
    preemptions = np.zeros(len(tokens), dtype=np.int32)
    rows = []
    for k, replica in enumerate(replicas):
        for rid, req in enumerate(replica.run.reqs):
            preemptions[owner[k][rid]] += req.preemptions
        rows += [(*row, k) for row in replica.run.telemetry]
    telemetry = np.array(sorted(rows), dtype=np.float64) if rows else np.empty((0, 10))
    spans = [
        [(int(offsets[g]), int(offsets[g + 1]))] if lengths[g] else [] for g in range(len(tokens))
    ]
    return SimResult(
        outcome=outcome,
        first=first,
        end=end,
        preemptions=preemptions,
        spans=spans,
        iter_end=flat,
        telemetry=telemetry[:, :-1] if telemetry.size else telemetry[:, :9],
        iterations=sum(r.run.iter_count for r in replicas),
        replica=telemetry[:, -1].astype(np.int32) if telemetry.size else None,
    )
