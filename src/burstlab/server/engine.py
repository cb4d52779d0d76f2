"""The mock server timed by the simulator: each token streams at its simulated time.

An :class:`~burstlab.sim.engine.OnlineEngine` runs on the server's event loop
against the wall clock (``time_scale`` simulated seconds per second: 2 runs the
engine twice as fast). A request enters the engine when it arrives; its tokens
are written when the engine's iterations produce them. Requests the engine
refuses because its queue is full get 429, those that wait past the queue
timeout get 503, as from a real overloaded server.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from burstlab.server.app import MAX_BODY_BYTES, RefusedError, Timed, make_app
from burstlab.server.fixed import FixedTiming
from burstlab.server.lengths import OutputLengths
from burstlab.server.openai import Ask
from burstlab.server.tokens import PromptCounter
from burstlab.sim.engine import OK, REJECTED, TOKEN, Engine, OnlineEngine
from burstlab.sim.engine import kernel as k


class EngineSource:
    """Token times from a live simulated engine (see the module docstring)."""

    def __init__(self, engine: Engine, time_scale: float = 1.0) -> None:
        if not time_scale > 0:
            raise ValueError("time_scale must be positive")
        self.scale = time_scale
        self.t0 = time.perf_counter()
        self.online = OnlineEngine(engine, self._listen)
        self.queues: dict[int, asyncio.Queue[tuple[int, float]]] = {}
        self.finished = 0
        self.refused = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def sim_now(self) -> float:
        """Simulated seconds since the server started."""
        return (time.perf_counter() - self.t0) * self.scale

    def wall(self, sim_s: float) -> float:
        """The ``time.perf_counter`` instant of simulated time ``sim_s``."""
        return self.t0 + sim_s / self.scale

    def _listen(self, rid: int, code: int, when: float) -> None:
        queue = self.queues.get(rid)
        if queue is None:
            return
        queue.put_nowait((code, when))
        if code != TOKEN:
            del self.queues[rid]
            if code == OK:
                self.finished += 1
            else:
                self.refused += 1

    async def start(self, _app: web.Application) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._drive())

    async def stop(self, _app: web.Application) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _drive(self) -> None:
        """Run the engine's iterations as their start times come, sleeping between."""
        assert self._wake is not None
        while True:
            nxt = self.online.advance(self.sim_now())
            timeout = None if nxt is None else max(0.0, self.wall(nxt) - time.perf_counter())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()

    async def open(self, ask: Ask, t_recv: float) -> Timed:
        now = (t_recv - self.t0) * self.scale
        self.online.advance(now)
        queue: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
        rid = self.online.add(now, ask.prompt_tokens, ask.tokens)
        self.queues[rid] = queue
        if self._wake is not None:
            self._wake.set()
        code, when = await queue.get()
        if code == REJECTED:
            raise RefusedError(429, "the engine's waiting queue is full", retry_after_s=1.0)
        if code not in (TOKEN, OK):
            raise RefusedError(503, "the request waited in the engine's queue past its timeout")
        admitted = float(self.online.run.rf[rid, k.ADMITTED])
        queued_s = 0.0 if math.isnan(admitted) else max(0.0, admitted - now) / self.scale

        async def times() -> AsyncIterator[float]:
            event, at = code, when
            while True:
                yield self.wall(at)
                if event == OK:
                    return
                event, at = await queue.get()
                if event == OK:
                    return

        return Timed(times(), queued_s)

    def metrics(self) -> dict[str, float]:
        state = self.online.state()
        return {
            "running": state["running"],
            "waiting": state["waiting"],
            "kv_cache_usage": state["kv_blocks_used"] / max(1.0, state["kv_blocks"]),
            "preemptions_total": state["preemptions"],
            "burstlab_kv_blocks_used": state["kv_blocks_used"],
            "burstlab_kv_blocks": state["kv_blocks"],
            "burstlab_requests_total": state["requests"],
            "burstlab_finished_total": self.finished,
            "burstlab_refused_total": self.refused,
        }


def make_engine_app(
    engine: Engine,
    *,
    model: str = "burstlab-sim",
    time_scale: float = 1.0,
    eos: int = 256,
    log_path: Path | None = None,
    max_body: int = MAX_BODY_BYTES,
    counter: PromptCounter | None = None,
    lengths: OutputLengths | None = None,
) -> web.Application:
    """The OpenAI-compatible app of :func:`burstlab.server.app.make_app`, timed by
    ``engine`` running live, on the prompt lengths ``counter`` counts. ``lengths``
    draws the response length of requests that do not force one (default: ``eos``
    tokens each); ``max_body`` caps a request body, in bytes. ``/v1/models`` and
    ``/tokenize`` report the engine's ``max_model_len`` (a llama.cpp slot's context;
    null when the engine sets no limit), the limit it refuses requests beyond."""
    source = EngineSource(engine, time_scale)
    app = make_app(
        FixedTiming(eos=eos),
        model=model,
        log_path=log_path,
        source=source,
        max_body=max_body,
        counter=counter,
        lengths=lengths,
        max_model_len=engine.cfg.max_model_len,
    )
    app.on_startup.append(source.start)
    app.on_cleanup.append(source.stop)
    return app
