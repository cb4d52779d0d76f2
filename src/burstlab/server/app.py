"""The mock server's aiohttp application: its routes, and the token timing they wait on.

Routes: ``GET /health``, ``GET /metrics`` (vLLM's metric names, see
:mod:`burstlab.server.metrics`), ``GET /v1/models``, ``GET /version``,
``POST /tokenize`` (vLLM's), ``POST /v1/completions`` and
``POST /v1/chat/completions`` (streaming SSE or one JSON body). Every error,
an unknown route (404) or method (405) included, is an OpenAI-shaped JSON body
``{"error": {"message", "type", "param", "code"}}``. A POST body is read only
up to ``max_body`` bytes: a larger
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import orjson
from aiohttp import web
from pydantic import ValidationError

from burstlab.core.version import __version__
from burstlab.server.fixed import FixedSource, FixedTiming
from burstlab.server.lengths import OutputLengths
from burstlab.server.metrics import ServerMetrics
from burstlab.server.openai import (
    DONE,
    Ask,
    Chunks,
    RequestError,
    TokenizeRequest,
    parse_request,
    prompt_ids,
    request_error,
)
from burstlab.server.tokens import PromptCounter, WordCounter

#: Largest request body by default, in bytes (16 MiB): room for token-id prompts of
#: long contexts (a 128 k-token prompt of ids is under 1 MiB of JSON).
MAX_BODY_BYTES = 16 << 20

_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


#: The ``type`` of an error body by status, where it is not ``invalid_request_error``.
ERROR_TYPES = {
    404: "NotFoundError",
    429: "rate_limit_error",
    500: "server_error",
    503: "service_unavailable_error",
}


class RefusedError(Exception):
    """A request the server turns away before its first token (status and message)."""

    def __init__(self, status: int, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class Timed:
    """A response's token times (``time.perf_counter`` seconds), and how long the
    request waited in a queue before it was scheduled, in seconds."""

    times: AsyncIterator[float]
    queued_s: float = 0.0


class TokenSource(Protocol):
    """When each token of a response is due: the one thing a server's timing decides."""

    async def open(self, ask: Ask, t_recv: float) -> Timed:
        """Token times of ``ask``, received at ``t_recv``; raises
        :class:`RefusedError` instead when the request is turned away."""
        ...

    def metrics(self) -> dict[str, float]:
        """The source's load for ``/metrics``: ``running``, ``waiting`` (requests),
        ``kv_cache_usage`` (0 to 1), ``preemptions_total``, and its own figures
        named ``burstlab_*``; a key left out reads 0 (``running``: the requests
        the server is answering)."""
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
    counter: PromptCounter | None = None,
    lengths: OutputLengths | None = None,
    max_model_len: int | None = None,
) -> web.Application:
    """The OpenAI-compatible mock server as an aiohttp application, with fixed timing.

    ``model`` is the id ``/v1/models`` lists and responses carry; a request
    naming another model gets a 404 (one naming none is served). ``counter``
    counts text prompts (default: one token per word; its method is stated in
    ``/v1/models``). ``lengths`` draws each request's natural response length
    (default: ``timing.eos`` tokens). ``max_model_len`` is what ``/tokenize``
    and ``/v1/models`` report (``None``: the mock has no context limit). With
    ``log_path``, one JSON line
    ``{"request_id", "t_end", "tokens"}`` is appended and flushed per finished
    request, after its last byte was written: ``request_id`` is the request's
    ``X-Request-Id`` header (or null), ``t_end`` is ``time.time()`` in seconds.
    The file is opened when the server starts. ``source`` replaces the fixed
    timing (the simulator-timed server passes its engine's). ``max_body`` caps a
    request body, in bytes.
    """
    if max_body < 1:
        raise ValueError(f"max_body must be at least 1 byte, got {max_body}")
    source = source or FixedSource(timing)
    handlers = _Handlers(
        lengths or OutputLengths.fixed(timing.eos),
        model,
        log_path,
        source,
        max_body,
        counter or WordCounter(),
        max_model_len,
    )
    app = web.Application(client_max_size=max_body, middlewares=[_json_errors])
    app.router.add_get("/health", handlers.health)
    app.router.add_get("/metrics", handlers.metrics)
    app.router.add_get("/v1/models", handlers.models)
    app.router.add_get("/version", handlers.version)
    for path, route in (
        ("/v1/completions", handlers.completions),
        ("/v1/chat/completions", handlers.chat),
        ("/tokenize", handlers.tokenize),
    ):
        app.router.add_post(path, route, expect_handler=handlers.expect)
    app.on_startup.append(handlers.open_log)
    app.on_cleanup.append(handlers.close_log)
    return app


@web.middleware
async def _json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """aiohttp's own errors (an unknown route, a wrong method, a body over
    ``client_max_size``) as OpenAI-shaped JSON, like every other error."""
    try:
        return await handler(request)  # type: ignore[no-any-return]
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            message = f"no route {request.path}"
        elif exc.status == 405:
            message = f"method {request.method} is not allowed on {request.path}"
        else:
            message = exc.reason
        headers = _echo(request)
        allow = exc.headers.get("Allow")
        if allow is not None:
            headers["Allow"] = allow
        return _error(exc.status, message, headers, close=exc.status == 413)


class _Handlers:
    """The routes of one app: its token source, model name, response ids and log file."""

    __slots__ = (
        "_ids",
        "_inflight",
        "_log",
        "counter",
        "lengths",
        "log_path",
        "max_body",
        "max_model_len",
        "model",
        "scrape",
        "source",
    )

    def __init__(  # noqa: PLR0917 - built in one place, by make_app
        self,
        lengths: OutputLengths,
        model: str,
        log_path: Path | None,
        source: TokenSource,
        max_body: int,
        counter: PromptCounter,
        max_model_len: int | None,
    ) -> None:
        self.lengths = lengths
        self.model = model
        self.log_path = log_path
        self.source = source
        self.max_body = max_body
        self.counter = counter
        self.max_model_len = max_model_len
        self._log: BinaryIO | None = None
        self._ids = itertools.count()
        self._inflight = 0
        self.scrape = ServerMetrics(model, self._load)

    def _load(self) -> dict[str, float]:
        return {"running": float(self._inflight), **self.source.metrics()}

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
        resp = web.Response(body=self.scrape.render())
        resp.content_type = "text/plain"
        resp.charset = "utf-8"
        return resp

    async def models(self, _request: web.Request) -> web.Response:
        """The served model; ``token_count`` states how prompt tokens are counted."""
        card = {
            "id": self.model,
            "object": "model",
            "created": 0,
            "owned_by": "burstlab",
            "root": self.model,
            "max_model_len": self.max_model_len,
            "token_count": self.counter.method,
            "output_lengths": self.lengths.spec,
        }
        return web.json_response({"object": "list", "data": [card]}, dumps=_dumps)

    async def version(self, _request: web.Request) -> web.Response:
        return web.json_response({"version": __version__}, dumps=_dumps)

    async def tokenize(self, request: web.Request) -> web.Response:
        """vLLM's ``/tokenize``: ``{model?, prompt | messages, add_special_tokens?}``
        to ``{count, max_model_len, tokens}``, with the server's own counter."""
        headers = _echo(request)
        turned_away = self._refuse(request, headers)
        if turned_away is not None:
            return turned_away
        body = await _read_capped(request, self.max_body)
        if body is None:
            return self._too_large(headers, "the body is")
        try:
            ids = _tokenize(body, self.model, self.counter)
        except RequestError as exc:
            return _error(exc.status, exc.message, headers, param=exc.param, kind=exc.kind)
        answer = {"count": len(ids), "max_model_len": self.max_model_len, "tokens": ids}
        return web.json_response(answer, dumps=_dumps, headers=headers)

    async def expect(self, request: web.Request) -> web.Response | None:
        """``Expect: 100-continue``: refuse a body too large or not JSON before the
        client sends it; otherwise ask for it, as aiohttp's default does."""
        refused = self._refuse(request, _echo(request))
        if refused is not None:
            return refused
        expect = request.headers.get("Expect", "")
        if expect.lower() != "100-continue":
            message = f"unknown Expect: {expect!r}"
            return _error(417, message, _echo(request), close=True, param="Expect")
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
            return _error(415, message, headers, close=True, param="Content-Type")
        length = request.content_length
        if length is not None and length > self.max_body:
            return self._too_large(headers, f"Content-Length {length} is")
        return None

    def _too_large(self, headers: dict[str, str], what: str) -> web.Response:
        message = f"request body too large: {what} over the limit of {self.max_body} bytes"
        return _error(413, message, headers, close=True, param="body")

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def _generate(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        t_recv = time.perf_counter()
        headers = _echo(request)
        turned_away = self._refuse(request, headers)
        if turned_away is not None:
            return turned_away
        body = await _read_capped(request, self.max_body)
        if body is None:
            return self._too_large(headers, "the body is")
        try:
            ask = parse_request(
                body, chat=chat, eos=self.lengths.draw(), model=self.model, counter=self.counter
            )
        except RequestError as exc:  # bad JSON included
            return _error(exc.status, exc.message, headers, param=exc.param, kind=exc.kind)
        self._inflight += 1
        try:
            return await self._answer(request, ask, t_recv, headers, chat=chat)
        finally:
            self._inflight -= 1

    async def _answer(
        self, request: web.Request, ask: Ask, t_recv: float, headers: dict[str, str], *, chat: bool
    ) -> web.StreamResponse:
        request_id = request.headers.get("X-Request-Id")
        try:
            timed = await self.source.open(ask, t_recv)
        except RefusedError as refused:
            if refused.retry_after_s is not None:
                headers["Retry-After"] = f"{refused.retry_after_s:g}"
            return _error(refused.status, refused.message, headers)
        sent: list[float] = []
        chunks = Chunks(chat, f"{'chatcmpl' if chat else 'cmpl'}-{next(self._ids)}", self.model)
        resp: web.StreamResponse
        if ask.stream:
            resp = web.StreamResponse(headers={**headers, **_SSE_HEADERS})
        else:
            sent.extend([when async for when in timed.times])
            await sleep_until(sent[-1] if sent else t_recv)
            resp = web.Response(
                body=chunks.whole(ask), content_type="application/json", headers=headers
            )
        try:
            await resp.prepare(request)
            if ask.stream:
                await self._stream(resp, ask, chunks, timed.times, sent)
            await resp.write_eof()
        except ConnectionResetError:
            # The client went away mid-response: not a server error, and not finished.
            return resp
        self.scrape.finished(t_recv, sent, time.perf_counter(), timed.queued_s, ask.prompt_tokens)
        self._finished(request_id, ask.tokens)
        return resp

    async def _stream(
        self,
        resp: web.StreamResponse,
        ask: Ask,
        chunks: Chunks,
        times: AsyncIterator[float],
        sent: list[float],
    ) -> None:
        """Write the SSE events of a prepared response, each token at its time
        (appended to ``sent`` as written, on ``time.perf_counter``)."""
        if chunks.chat:
            # Role first, before any token, as OpenAI does: a client must not take it as TTFT.
            await resp.write(chunks.role())
        last = ask.tokens - 1
        k = 0
        async for when in times:
            await sleep_until(when)
            await resp.write(chunks.token(k, ask.finish if k == last else None, ask.text_end))
            sent.append(time.perf_counter())
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


def _tokenize(body: bytes | bytearray, model: str, counter: PromptCounter) -> list[int]:
    """The token ids ``/tokenize`` answers with; :class:`RequestError` for a bad body.

    ``add_special_tokens`` defaults to true for a ``prompt`` and false for
    ``messages``, as vLLM's does; messages count their contents, no template.
    """
    try:
        req = TokenizeRequest.model_validate_json(body)
    except ValidationError as exc:
        raise request_error(exc) from None
    if req.model is not None and req.model != model:
        message = f"The model `{req.model}` does not exist."
        raise RequestError(404, message, "model", "NotFoundError")
    if (req.prompt is None) == (req.messages is None):
        raise RequestError(400, "give one of prompt or messages", "prompt")
    if req.prompt is not None:
        special = True if req.add_special_tokens is None else req.add_special_tokens
        return prompt_ids(req.prompt, counter, special=special)
    special = bool(req.add_special_tokens)
    assert req.messages is not None
    return [
        t for m in req.messages for text in m.texts() for t in counter.encode(text, special=special)
    ]


def _error(
    status: int,
    message: str,
    headers: dict[str, str],
    *,
    close: bool = False,
    param: str | None = None,
    kind: str | None = None,
) -> web.Response:
    """An OpenAI-shaped error ``{"error": {message, type, param, code}}``; ``kind``
    defaults by status (:data:`ERROR_TYPES`); ``close``: with ``Connection: close``,
    and the connection closed after it, for a refusal whose body was not read."""
    kind = kind or ERROR_TYPES.get(status, "invalid_request_error")
    error = {"message": message, "type": kind, "param": param, "code": status}
    body = {"error": error}
    resp = web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )
    if close:
        resp.force_close()
    return resp


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()
