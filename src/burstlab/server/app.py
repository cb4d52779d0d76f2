"""The mock server's aiohttp application: its routes, and the token timing they wait on.

Routes: ``GET /health``, ``GET /metrics``, ``GET /v1/models``,
``POST /v1/completions`` and ``POST /v1/chat/completions`` (streaming SSE or
one JSON body). When each token is written is a :class:`TokenSource`'s choice
(:class:`~burstlab.server.fixed.FixedSource` by default, the live engine of
:mod:`burstlab.server.engine`); the server does no per-request work beyond
parsing the body and formatting small JSON chunks, so one process holds
hundreds of concurrent streams.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import orjson
from aiohttp import web
from pydantic import ValidationError

from burstlab.server.fixed import FixedSource, FixedTiming
from burstlab.server.openai import DONE, Ask, Chunks, parse_request, request_error

#: Largest request body, in bytes: room for token-id prompts of long contexts.
MAX_BODY_BYTES = 64 << 20

_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


class RefusedError(Exception):
    """A request the server turns away before its first token (status and message)."""

    def __init__(self, status: int, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s


class TokenSource(Protocol):
    """When each token of a response is due: the one thing a server's timing decides."""

    async def open(self, ask: Ask, t_recv: float) -> AsyncIterator[float]:
        """Token times (``time.perf_counter`` seconds) of ``ask``, received at
        ``t_recv``; raises :class:`RefusedError` instead when the request is turned away."""
        ...

    def metrics(self) -> dict[str, float]:
        """Gauges and counters for ``/metrics`` (Prometheus names without prefix)."""
        ...


async def sleep_until(target: float) -> None:
    """Sleep until ``target`` on ``time.perf_counter`` (seconds); return at once if past.

    Schedules are absolute so that lateness in one step never carries into the next.
    """
    delay = target - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


def make_app(
    timing: FixedTiming,
    model: str = "burstlab-fixed",
    log_path: Path | None = None,
    *,
    source: TokenSource | None = None,
) -> web.Application:
    """The OpenAI-compatible mock server as an aiohttp application, with fixed timing.

    ``model`` is the id ``/v1/models`` lists and responses carry (requests may
    name any model). With ``log_path``, one JSON line
    ``{"request_id", "t_end", "tokens"}`` is appended and flushed per finished
    request, after its last byte was written: ``request_id`` is the request's
    ``X-Request-Id`` header (or null), ``t_end`` is ``time.time()`` in seconds.
    The file is opened when the server starts. ``source`` replaces the fixed
    timing (the simulator-timed server passes its engine's); ``timing.eos`` still
    sets the natural response length.
    """
    handlers = _Handlers(timing.eos, model, log_path, source or FixedSource(timing))
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_get("/health", handlers.health)
    app.router.add_get("/metrics", handlers.metrics)
    app.router.add_get("/v1/models", handlers.models)
    app.router.add_post("/v1/completions", handlers.completions)
    app.router.add_post("/v1/chat/completions", handlers.chat)
    app.on_startup.append(handlers.open_log)
    app.on_cleanup.append(handlers.close_log)
    return app


class _Handlers:
    """The routes of one app: its token source, model name, response ids and log file."""

    __slots__ = ("_ids", "_log", "eos", "log_path", "model", "source")

    def __init__(self, eos: int, model: str, log_path: Path | None, source: TokenSource) -> None:
        self.eos = eos
        self.model = model
        self.log_path = log_path
        self.source = source
        self._log: BinaryIO | None = None
        self._ids = itertools.count()

    async def open_log(self, _app: web.Application) -> None:
        if self.log_path is not None:
            self._log = self.log_path.open("ab")

    async def close_log(self, _app: web.Application) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    async def health(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def metrics(self, _request: web.Request) -> web.Response:
        lines = []
        for name, value in self.source.metrics().items():
            kind = "counter" if name.endswith("_total") else "gauge"
            lines += [f"# TYPE burstlab_{name} {kind}", f"burstlab_{name} {value:g}"]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    async def models(self, _request: web.Request) -> web.Response:
        card = {"id": self.model, "object": "model", "created": 0, "owned_by": "burstlab"}
        return web.json_response({"object": "list", "data": [card]}, dumps=_dumps)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def _generate(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        t_recv = time.perf_counter()
        request_id = request.headers.get("X-Request-Id")
        headers = {"X-Request-Id": request_id} if request_id is not None else {}
        try:
            ask = parse_request(await request.read(), chat=chat, eos=self.eos)
        except ValidationError as exc:  # bad JSON included
            return _error(400, request_error(exc), headers)
        try:
            times = await self.source.open(ask, t_recv)
        except RefusedError as refused:
            if refused.retry_after_s is not None:
                headers["Retry-After"] = f"{refused.retry_after_s:g}"
            return _error(refused.status, refused.message, headers)
        chunks = Chunks(chat, f"{'chatcmpl' if chat else 'cmpl'}-{next(self._ids)}", self.model)
        resp: web.StreamResponse
        if ask.stream:
            resp = web.StreamResponse(headers={**headers, **_SSE_HEADERS})
        else:
            last = t_recv
            async for when in times:
                last = when
            await sleep_until(last)
            resp = web.Response(
                body=chunks.whole(ask), content_type="application/json", headers=headers
            )
        try:
            await resp.prepare(request)
            if ask.stream:
                await self._stream(resp, ask, chunks, times)
            await resp.write_eof()
        except ConnectionResetError:
            # The client went away mid-response: not a server error, and not finished.
            return resp
        self._finished(request_id, ask.tokens)
        return resp

    async def _stream(
        self, resp: web.StreamResponse, ask: Ask, chunks: Chunks, times: AsyncIterator[float]
    ) -> None:
        """Write the SSE events of a prepared response, each token at its time."""
        if chunks.chat:
            # Role first, before any token, as OpenAI does: a client must not take it as TTFT.
            await resp.write(chunks.role())
        last = ask.tokens - 1
        k = 0
        async for when in times:
            await sleep_until(when)
            await resp.write(chunks.token(k, ask.finish if k == last else None))
            k += 1
        if ask.include_usage:
            await resp.write(chunks.usage(ask))
        await resp.write(DONE)

    def _finished(self, request_id: str | None, tokens: int) -> None:
        """Append one line per finished request, flushed, so it survives a crash of the client."""
        if self._log is None:
            return
        line = {"request_id": request_id, "t_end": time.time(), "tokens": tokens}
        self._log.write(orjson.dumps(line) + b"\n")
        self._log.flush()


def _error(status: int, message: str, headers: dict[str, str]) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": status}}
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()
