"""Prefill/decode disaggregation: a prefill pool and a decode pool of one engine.

A request is prefilled on a prefill instance (which produces its first token),
its KV cache then crosses the link to a decode instance (``prompt tokens x KV
bytes per token / link bandwidth``, plus the link latency), and the decode
instance generates the remaining tokens without prefilling again. Within each
pool, requests go to the instance with the fewest outstanding requests.

The ratio is static unless ``dynamic`` is set: then a :class:`RatioController`
looks at both pools every ``interval_s`` and moves one instance from the
less pressed pool to the other (see its docstring); the moving instance drains
(finishes what it holds, taking nothing new) and then spends ``switch_s``
changing role before it takes work again.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from burstlab.sim.engine import Engine
from burstlab.sim.fleet import DECODE, DRAINING, PREFILL, STARTING, Fleet, LinkSpec


class RatioConfig(BaseModel):
    """When the dynamic controller moves an instance between the pools."""

    model_config = ConfigDict(extra="forbid")

    #: Seconds between looks at the pools.
    interval_s: float = Field(2.0, gt=0)
    #: Seconds an instance spends changing role after it drained (reload, warm-up).
    switch_s: float = Field(10.0, ge=0)
    #: Seconds after a move before the next one.
    cooldown_s: float = Field(20.0, ge=0)
    #: Prefill pressure: waiting requests per active prefill instance above which
    #: the prefill pool wants an instance.
    prefill_waiting: float = Field(4.0, ge=0)
    #: Decode pressure: KV-cache use of the decode pool (0-1), or waiting requests
    #: per active decode instance, above which it wants an instance.
    decode_kv: float = Field(0.85, gt=0, le=1)
    decode_waiting: float = Field(4.0, ge=0)
    #: A pool gives an instance only if, without it, its pressure would stay below
    #: this share of its threshold (so the move does not press it in turn).
    margin: float = Field(0.5, gt=0, le=1)


class PDConfig(BaseModel):
    """Pool sizes, the KV link between them, and the optional ratio controller."""

    model_config = ConfigDict(extra="forbid")

    prefill: int = Field(1, ge=1)
    decode: int = Field(1, ge=1)
    #: Bytes per second of the link carrying KV caches (e.g. NVLink 300e9, RDMA 25e9).
    link_bandwidth: float = Field(25e9, gt=0)
    link_latency_s: float = Field(1e-4, ge=0)
    #: Move instances between the pools from queue and KV pressure (None: static).
    dynamic: RatioConfig | None = None


class RatioController:
    """Moves one instance at a time between the prefill and decode pools.

    Pressure is measured against thresholds (1.0 = at the threshold): the prefill
    pool's waiting requests per active instance over ``prefill_waiting``; the
    decode pool's KV use over ``decode_kv`` or its waiting requests per instance
    over ``decode_waiting``, whichever is higher. Every ``interval_s`` (at least
    ``cooldown_s`` after the last move, with no instance still changing role, and
    with three instances or more), a pool above 1.0 takes the least loaded
    instance of the other pool, if that pool's pressure without it would stay
    below ``margin``: a move never presses the pool it leaves, so a steady mix
    moves nothing.
    """

    def __init__(self, config: RatioConfig) -> None:
        self.config = config
        self.last_move = -float("inf")
        #: ``(seconds, to role)`` of every move, for reports.
        self.moves: list[tuple[float, int]] = []

    def tick(self, t: float, fleet: Fleet) -> float:
        """Look at both pools at ``t``, move an instance if one is pressed; the next look."""
        self._look(t, fleet)
        return t + self.config.interval_s

    def _look(self, t: float, fleet: Fleet) -> None:
        cfg = self.config
        moving = fleet.count(PREFILL, STARTING, DRAINING) + fleet.count(DECODE, STARTING, DRAINING)
        if t - self.last_move < cfg.cooldown_s or moving:
            return
        pools = {r: [fleet.instances[k] for k in fleet.members(r)] for r in (PREFILL, DECODE)}
        if len(pools[PREFILL]) + len(pools[DECODE]) < 3:
            return  # a move would leave a pool empty while the instance drains
        blocks = fleet.cfg.num_blocks
        prefill_waiting = sum(x.engine.run.waiting_count for x in pools[PREFILL])
        decode_waiting = sum(x.engine.run.waiting_count for x in pools[DECODE])
        kv_used = sum(blocks - x.engine.free_blocks(t) for x in pools[DECODE])

        def prefill_pressure(n: int) -> float:  # 1.0 = at the threshold
            return prefill_waiting / n / cfg.prefill_waiting if n else math.inf

        def decode_pressure(n: int) -> float:
            if not n:
                return math.inf
            return max(
                kv_used / (blocks * n) / cfg.decode_kv, decode_waiting / n / cfg.decode_waiting
            )

        p, d = len(pools[PREFILL]), len(pools[DECODE])
        if prefill_pressure(p) > 1 and decode_pressure(d - 1) < cfg.margin:
            source, target = DECODE, PREFILL
        elif decode_pressure(d) > 1 and prefill_pressure(p - 1) < cfg.margin:
            source, target = PREFILL, DECODE
        else:
            return
        members = fleet.members(source)
        k = min(members, key=lambda j: fleet.instances[j].outstanding)
        if fleet.drain(t, k, next_role=target, switch_s=cfg.switch_s):
            self.last_move = t
            self.moves.append((t, target))


class PDCluster(Fleet):
    """``run`` as :meth:`Engine.run`, on disaggregated prefill and decode pools."""

    def __init__(self, engine: Engine, config: PDConfig) -> None:
        super().__init__(
            engine,
            [PREFILL] * config.prefill + [DECODE] * config.decode,
            router="least_outstanding",
            link=LinkSpec(config.link_bandwidth, config.link_latency_s),
            controller=RatioController(config.dynamic) if config.dynamic is not None else None,
        )
        self.config = config
