"""Prefill/decode disaggregation: a prefill pool and a decode pool of one engine.

A request is prefilled on a prefill instance (which produces its first token),
its KV cache then crosses the link to a decode instance (``prompt tokens x KV
bytes per token / link bandwidth``, plus the link latency), and the decode
instance generates the remaining tokens without prefilling again. Within each
pool, requests go to the instance with the fewest outstanding requests. All
instances are simulated together in time order; every token time is exact.

The ratio of prefill to decode instances is static here; a controller that
moves instances between the roles is not built yet.
"""

from __future__ import annotations

import heapq
import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from burstlab.sim.cluster import Gather
from burstlab.sim.engine import OK, Engine, EngineConfig, Listener, OnlineEngine, SimResult


class PDConfig(BaseModel):
    """Pool sizes and the KV link between them."""

    model_config = ConfigDict(extra="forbid")

    prefill: int = Field(1, ge=1)
    decode: int = Field(1, ge=1)
    #: Bytes per second of the link carrying KV caches (e.g. NVLink 300e9, RDMA 25e9).
    link_bandwidth: float = Field(25e9, gt=0)
    link_latency_s: float = Field(1e-4, ge=0)


def _least_loaded(pool: list[OnlineEngine]) -> int:
    loads = [len(e.run.running) + e.run.waiting_count for e in pool]
    return int(np.argmin(loads))


class PDCluster:
    """``run`` as :meth:`Engine.run`, on disaggregated prefill and decode pools."""

    def __init__(self, engine: Engine, config: PDConfig) -> None:
        self.engine = engine
        self.config = config
        self.cfg: EngineConfig = engine.cfg

    def run(
        self,
        arrival_s: np.ndarray,
        input_tokens: np.ndarray,
        output_tokens: np.ndarray,
    ) -> SimResult:
        """Simulate the workload; telemetry rows carry their instance (prefill first)."""
        n = len(arrival_s)
        cfg = self.config
        prompts = np.maximum(np.asarray(input_tokens, dtype=np.int64), 1)
        outputs = np.maximum(np.asarray(output_tokens, dtype=np.int64), 1)
        handoffs: list[tuple[float, int]] = []
        per_token = self.cfg.kv_bytes_per_token
        count = cfg.prefill + cfg.decode
        gather = Gather(n, count)

        def listener(k: int) -> Listener:
            prefilling = k < cfg.prefill

            def listen(rid: int, code: int, when: float) -> None:
                g = gather.owner[k][rid]
                if prefilling and code == OK and outputs[g] > 1:
                    delay = cfg.link_latency_s + prompts[g] * per_token / cfg.link_bandwidth
                    heapq.heappush(handoffs, (when + delay, g))
                else:
                    gather.record(g, code, when)

            return listen

        engines = [OnlineEngine(self.engine, listener(k)) for k in range(count)]
        prefill, decode = engines[: cfg.prefill], engines[cfg.prefill :]
        i = 0
        while i < n or handoffs:
            t = min(
                float(arrival_s[i]) if i < n else math.inf, handoffs[0][0] if handoffs else math.inf
            )
            for e in prefill:
                e.advance(t)
            if handoffs and handoffs[0][0] < t:
                continue  # the prefill pool just handed over something earlier
            if handoffs and (i >= n or handoffs[0][0] <= arrival_s[i]):
                at, g = heapq.heappop(handoffs)
                for e in decode:
                    e.advance(at)
                k = _least_loaded(decode)
                gather.owner[cfg.prefill + k].append(g)
                decode[k].add(at, int(prompts[g]), int(outputs[g]), kv_ready=True)
            else:
                k = _least_loaded(prefill)
                gather.owner[k].append(i)
                prefill[k].add(t, int(prompts[i]), 1)
                i += 1
            if i >= n and not handoffs:
                for e in prefill:
                    e.advance(math.inf)
        for e in decode:
            e.advance(math.inf)
        return gather.result(engines)
