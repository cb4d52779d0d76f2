"""Req: one request's state inside a replica (lengths, sort key, KV held, tokens emitted)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True, eq=False)  # compared by identity (``running.remove``)
class Req:
    """A request as a replica sees it; lengths and counts in tokens, times in seconds."""

    rid: int
    arrival: float
    prompt: int
    output: int
    key: float
    target: int = 0  # tokens to prefill before the next token (prompt, or prompt+generated)
    kv: int = 0  # tokens whose KV is resident on the GPU
    blocks: int = 0
    generated: int = 0
    swapped: int = 0  # KV tokens held in host memory after a swap-out
    transferred: bool = False  # ``swapped`` KV arrived from elsewhere, already paid for
    preemptions: int = 0
    spans: list[tuple[int, int]] = field(default_factory=list)
