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

from burstlab.sim.engine import PENDING, TOKEN, Engine, EngineConfig, OnlineEngine, SimResult

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
        n = len(arrival_s)
        count = self.config.replicas
        tokens: list[list[float]] = [[] for _ in range(n)]
        outcome = np.full(n, PENDING, dtype=np.int8)
        end = np.full(n, np.nan)
        owner: list[list[int]] = [[] for _ in range(count)]

        def listener(replica: int):  # type: ignore[no-untyped-def]
            def listen(rid: int, code: int, when: float) -> None:
                g = owner[replica][rid]
                if code == TOKEN:
                    tokens[g].append(when)
                else:
                    outcome[g] = code
                    end[g] = when

            return listen

        replicas = [OnlineEngine(self.engine, listener(k)) for k in range(count)]
        for g in range(n):
            t = float(arrival_s[g])
            for replica in replicas:
                replica.advance(t)
            k = self._route(g, replicas)
            owner[k].append(g)
            replicas[k].add(t, int(input_tokens[g]), int(output_tokens[g]))
        for replica in replicas:
            replica.advance(math.inf)
        return build_result(tokens, outcome, end, replicas, owner)

    def _route(self, g: int, replicas: list[OnlineEngine]) -> int:
        router = self.config.router
        if router == "round_robin":
            return g % len(replicas)
        loads = [len(r.run.running) + r.run.waiting_count for r in replicas]
        if router == "least_outstanding":
            return int(np.argmin(loads))
        free = [r.run.free for r in replicas]
        return max(range(len(replicas)), key=lambda k: (free[k], -loads[k]))


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
