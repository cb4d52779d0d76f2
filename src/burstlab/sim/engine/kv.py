"""Paged KV blocks: reserving and freeing a request's blocks, preemption and swap-in.

A request holds ``ceil(kv_tokens / block_size)`` blocks. Preemption frees them
all: recompute re-queues the request to prefill its prompt and the tokens
generated so far again; swap moves its KV to host memory (at ``swap_bandwidth``)
and back when it is re-admitted.
"""

from __future__ import annotations

from collections.abc import Iterable

from burstlab.sim.engine.config import EngineConfig
from burstlab.sim.engine.request import Req


def blocks_needed(decode: Iterable[Req], j: int, size: int) -> int:
    """Blocks a decode batch needs beyond those it holds once each request has
    ``j`` more KV tokens (blocks of ``size`` tokens)."""
    return sum(max(0, -(-(r.kv + j) // size) - r.blocks) for r in decode)


class BlockPool:
    """One replica's KV cache: ``total`` blocks of ``size`` tokens, ``free`` of them
    unreserved, and the preemptions so far."""

    __slots__ = (
        "bandwidth",
        "bytes_per_token",
        "free",
        "preemptions",
        "recompute",
        "size",
        "total",
    )

    def __init__(self, cfg: EngineConfig) -> None:
        self.size = cfg.block_size
        self.total = cfg.num_blocks
        self.free = cfg.num_blocks
        self.recompute = cfg.preemption == "recompute"
        self.bytes_per_token = cfg.kv_bytes_per_token
        self.bandwidth = cfg.swap_bandwidth
        self.preemptions = 0

    def grow(self, r: Req, tokens: int) -> bool:
        """Reserve blocks for ``tokens`` more KV tokens of ``r``; False if not free."""
        need = -(-(r.kv + tokens) // self.size) - r.blocks
        if need > self.free:
            return False
        self.free -= need
        r.blocks += need
        return True

    def release(self, r: Req) -> None:
        """``r`` is done: its blocks are free."""
        self.free += r.blocks
        r.blocks = 0

    def preempt(self, r: Req) -> float:
        """Evict ``r`` (off the running batch; the caller re-queues it); the seconds
        its swap-out takes (0 for recompute)."""
        r.preemptions += 1
        self.preemptions += 1
        self.free += r.blocks
        r.blocks = 0
        cost = 0.0
        if self.recompute:
            r.target = r.prompt + r.generated
        else:
            r.swapped = r.kv
            cost = r.kv * self.bytes_per_token / self.bandwidth
        r.kv = 0
        return cost

    def swap_in(self, r: Req) -> float | None:
        """Bring back ``r``'s swapped KV (``r.swapped`` tokens, from a swap-out or a
        prefill instance); the seconds it takes (0 for KV already paid for), or None
        when its blocks are not free."""
        need = r.swapped
        if -(-need // self.size) > self.free:
            return None
        r.kv = 0
        self.grow(r, need)
        r.kv = need
        seconds = 0.0 if r.transferred else need * self.bytes_per_token / self.bandwidth
        r.swapped = 0
        r.transferred = False
        return seconds
