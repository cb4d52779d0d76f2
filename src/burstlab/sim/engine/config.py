"""EngineConfig: the scheduler and memory settings of one replica (vLLM's names)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class EngineConfig(BaseModel):
    """Scheduler and memory settings of one replica (vLLM's names where they exist)."""

    model_config = ConfigDict(extra="forbid")

    max_num_seqs: int = Field(256, ge=1)
    max_batched_tokens: int = Field(8192, ge=1)
    chunked_prefill: bool = True
    block_size: int = Field(16, ge=1)
    num_blocks: int = Field(2048, ge=1)
    preemption: Literal["recompute", "swap"] = "recompute"
    #: Bytes per KV token (for swap cost) and host link bandwidth in bytes/s.
    kv_bytes_per_token: int = Field(524_288, ge=1)
    swap_bandwidth: float = Field(25e9, gt=0)
    scheduler: Literal["fcfs", "srf", "lrf"] = "fcfs"
    #: What shortest/longest-first sort on: input length, the true output length
    #: (an oracle), or a predicted output length given per request.
    key: Literal["input", "output", "predicted", "total"] = "input"
    #: Priority aging for srf/lrf, in key units per second waited (0: none).
    aging: float = Field(0.0, ge=0)
    #: The longest context a request may have, prompt plus output tokens; a longer
    #: one is rejected at its arrival (vLLM's ``max_model_len``; llama.cpp's context
    #: per slot). None: only the KV cache's size limits it.
    max_model_len: int | None = Field(None, ge=1)
    #: The most requests that may wait; an arrival beyond it is rejected (http 429).
    queue_cap: int | None = Field(None, ge=0)
    queue_timeout_s: float | None = Field(None, gt=0)
    #: A request preempted more than this many times fails (``PREEMPTED``).
    max_preemptions: int | None = Field(None, ge=0)
    #: The client gives up on a request not complete this many seconds after its
    #: arrival, wherever it is (``CLIENT_TIMEOUT``; its blocks are freed).
    client_timeout_s: float | None = Field(None, gt=0)
