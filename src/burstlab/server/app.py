"""The mock server's aiohttp application: its routes, and the token timing they wait on.

Routes: ``GET /health``, ``GET /metrics``, ``GET /v1/models``,
``POST /v1/completions`` and ``POST /v1/chat/completions`` (streaming SSE or
one JSON body). A POST body is read only up to ``max_body`` bytes: a larger
``Content-Length`` gets a 413 before a byte of the body is read, a chunked body
a 413 as soon as it passes the cap, and either way the connection is closed
rather than drained. A ``Content-Type`` other than JSON gets a 415.

When each token is written is a :class:`TokenSource`'s choice
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

#: Largest request body by default, in bytes (16 MiB): room for token-id prompts of
#: long contexts (a 128 k-token prompt of ids is under 1 MiB of JSON).
MAX_BODY_BYTES = 16 << 20

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
    max_body: int = MAX_BODY_BYTES,
) -> web.Application:
    """The OpenAI-compatible mock server as an aiohttp application, with fixed timing.

    ``model`` is the id ``/v1/models`` lists and responses carry (requests may
    name any model). With ``log_path``, one JSON line
    ``{"request_id", "t_end", "tokens"}`` is appended and flushed per finished
    request, after its last byte was written: ``request_id`` is the request's
    ``X-Request-Id`` header (or null), ``t_end`` is ``time.time()`` in seconds.
    The file is opened when the server starts. ``source`` replaces the fixed
    timing (the simulator-timed server passes its engine's); ``timing.eos`` still
    sets the natural response length. ``max_body`` caps a request body, in bytes.
    """
    if max_body < 1:
        raise ValueError(f"max_body must be at least 1 byte, got {max_body}")
    source = source or FixedSource(timing)
    handlers = _Handlers(timing.eos, model, log_path, source, max_body)
    app = web.Application(client_max_size=max_body)
    app.router.add_get("/health", handlers.health)
    app.router.add_get("/metrics", handlers.metrics)
    app.router.add_get("/v1/models", handlers.models)
    for path, route in (
        ("/v1/completions", handlers.completions),
        ("/v1/chat/completions", handlers.chat),
    ):
        app.router.add_post(path, route, expect_handler=handlers.expect)
    app.on_startup.append(handlers.open_log)
    app.on_cleanup.append(handlers.close_log)
    return app


class _Handlers:
    """The routes of one app: its token source, model name, response ids and log file."""

    __slots__ = ("_ids", "_log", "eos", "log_path", "max_body", "model", "source")

    def __init__(
        self, eos: int, model: str, log_path: Path | None, source: TokenSource, max_body: int
    ) -> None:
        self.eos = eos
        self.model = model
        self.log_path = log_path
        self.source = source
        self.max_body = max_body
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

    async def expect(self, request: web.Request) -> web.Response | None:
        """``Expect: 100-continue``: refuse a body too large or not JSON before the
        client sends it; otherwise ask for it, as aiohttp's default does."""
        refused = self._refuse(request, _echo(request))
        if refused is not None:
            return refused
        expect = request.headers.get("Expect", "")
        if expect.lower() != "100-continue":
            return _error(417, f"unknown Expect: {expect!r}", _echo(request), close=True)
        if request.version >= (1, 1):
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the response proper starts after it
        return None

    def _refuse(self, request: web.Request, headers: dict[str, str]) -> web.Response | None:
        """A 415 for a body that is not JSON or a 413 for a ``Content-Length`` over the
        cap, judged on the headers alone; ``None`` when the body may be read."""
        kind = request.headers.get("Content-Type")
        if kind is not None and not _is_json(request.content_type):
            message = f"Content-Type {kind!r} is not supported: send application/json"
            return _error(415, message, headers, close=True)
        length = request.content_length
        if length is not None and length > self.max_body:
            return self._too_large(headers, f"Content-Length {length} is")
        return None

    def _too_large(self, headers: dict[str, str], what: str) -> web.Response:
        message = f"request body too large: {what} over the limit of {self.max_body} bytes"
        return _error(413, message, headers, close=True)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def _generate(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        t_recv = time.perf_counter()
        request_id = request.headers.get("X-Request-Id")
        headers = _echo(request)
        turned_away = self._refuse(request, headers)
        if turned_away is not None:
            return turned_away
        body = await _read_capped(request, self.max_body)
        if body is None:
            return self._too_large(headers, "the body is")
        try:
            ask = parse_request(body, chat=chat, eos=self.eos)
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


async def _read_capped(request: web.Request, cap: int) -> bytearray | None:
    """The body of ``request``, or ``None`` as soon as it passes ``cap`` bytes.

    Reads the payload stream chunk by chunk at aiohttp's default buffer limits (unlike
    ``request.read()``, which raises them to ``client_max_size``), so at most one
    chunk past the cap is ever held.
    """
    body = bytearray()
    async for chunk in request.content.iter_any():
        if len(body) + len(chunk) > cap:
            return None
        body += chunk
    return body


def _echo(request: web.Request) -> dict[str, str]:
    """The headers every answer to ``request`` carries: its ``X-Request-Id``, if any."""
    request_id = request.headers.get("X-Request-Id")
    return {"X-Request-Id": request_id} if request_id is not None else {}


def _is_json(content_type: str) -> bool:
    """``application/json`` or a ``+json`` type (parameters such as charset already gone)."""
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


def _error(
    status: int, message: str, headers: dict[str, str], *, close: bool = False
) -> web.Response:
    """An OpenAI-shaped error; ``close``: with ``Connection: close``, and the connection
    closed after it, for a refusal whose body was not read (it is never drained)."""
    body = {"error": {"message": message, "type": "invalid_request_error", "code": status}}
    resp = web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )
    if close:
        resp.force_close()
    return resp


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()
