"""A real aiohttp server on 127.0.0.1 that misbehaves on purpose, for client fault tests.

Each request's fault is picked by its ``X-Request-Id`` header ``<anything>-<int>``:
``faults[int % len(faults)]`` (a request without a parsable id takes the
server's arrival count instead). Every fault answers both ``/v1/completions``
and ``/v1/chat/completions`` with OpenAI-shaped SSE (whatever ``stream`` says);
see :data:`FAULTS` for what each does.

Use::

    with FaultyServer(["ok", "reset_mid_stream", "stall"]) as server:
        asyncio.run(client(server.url))       # request ids run-0, run-1, run-2, ...
    assert server.seen == [("run-0", "ok"), ...]

or the ``faulty_server`` fixture (a factory: ``faulty_server(["ok"], tokens=3)``),
imported into a test module with ``from support.faulty_server import faulty_server``.
The server runs in a daemon thread on its own event loop, so a client can run
``asyncio.run`` in the test's thread.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import socket
import struct
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack, suppress
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from types import TracebackType
from typing import Any

import orjson
import pytest
from aiohttp import web

from burstlab.server.hosting import serve_in_thread

#: Each fault and what the server does (N = ``tokens``).
FAULTS: dict[str, str] = {
    "ok": "N token chunks, finish_reason 'length' on the last, [DONE], clean end",
    "reset_mid_stream": "headers and 2 token chunks, then a TCP RST",
    "reset_before_headers": "reads the request, then a TCP RST with no response",
    "fin_mid_chunk": "2 token chunks, then half an HTTP chunk, then a clean close (FIN)",
    "http_429": "status 429, Retry-After: 2, JSON error body",
    "http_500": "status 500, JSON error body",
    "http_503": "status 503, JSON error body",
    "http_400": "status 400, JSON error body",
    "retry_after_date": "status 429, Retry-After as an HTTP-date RETRY_AFTER_S from now",
    "stall": "headers, then nothing for an hour (cancelled when the server stops)",
    "stall_before_headers": "reads the request, then nothing for an hour",
    "malformed_sse": "1 good chunk, a 'data: {not json' event, then the rest as in ok",
    "no_done": "N token chunks with no finish_reason and no [DONE], then a clean end",
    "finish_no_done": "N token chunks, finish_reason on the last, no [DONE], clean end",
    "oversized_chunk": "one valid JSON data event of oversize_bytes (5 MiB), then [DONE]",
    "event_1mib": "one token chunk whose data is exactly 1 MiB of JSON, then finish and [DONE]",
    "empty": "one chunk with finish_reason 'stop' and empty content, then [DONE]",
    "trickle": "N token chunks trickle_s (0.3 s) apart, then finish and [DONE]",
    "error_event": 'one token chunk, then data: {"error": {"message": "boom"}}, clean end',
    "split_utf8": "multi-byte tokens (SPLIT_TOKENS), each event written in pieces that "
    "cut a UTF-8 character, with pauses between the writes; then finish and [DONE]",
    "crlf": "as ok, with CRLF line endings",
    "gzip": "as ok, the whole body gzip-compressed with Content-Encoding: gzip",
    "ignore_max_tokens": "token chunks until the client hangs up (at most ENDLESS_TOKENS, "
    "then finish and [DONE]), whatever max_tokens says",
    "json_reply": "one application/json body (no stream) with N tokens of text and usage",
    "bad_chunk_size": "one token chunk, trickle_s (0.3 s) of nothing, then an invalid HTTP "
    "chunk-size line ('zz') in a write of its own, then a clean close (FIN)",
}

#: Token texts of ``split_utf8``: 2-, 3- and 4-byte UTF-8 characters.
SPLIT_TOKENS = ("é", "日本", "🙂", "ü ")
#: Token text of every other fault.
WORD = "tok "
#: How long the stall faults wait, in seconds: far longer than any test.
STALL_S = 3600.0
#: Most token chunks ``ignore_max_tokens`` sends when the client never hangs up.
ENDLESS_TOKENS = 100_000
#: How far ahead ``retry_after_date``'s Retry-After date is, in seconds.
RETRY_AFTER_S = 30


class FaultyServer:
    """The server: a context manager exposing ``url`` and ``seen``.

    ``seen`` lists ``(request_id, fault)`` in arrival order (``request_id`` is
    None without the header). ``tokens`` is N in :data:`FAULTS`; ``itl_s`` is
    the gap between token chunks, in seconds, of every fault but ``trickle``.
    """

    def __init__(
        self,
        faults: Sequence[str],
        *,
        tokens: int = 4,
        itl_s: float = 0.0,
        trickle_s: float = 0.3,
        oversize_bytes: int = 5 << 20,
    ) -> None:
        unknown = [f for f in faults if f not in FAULTS]
        if not faults or unknown:
            raise ValueError(f"faults must be a non-empty list of {sorted(FAULTS)}: {unknown}")
        self.faults = list(faults)
        self.tokens = tokens
        self.itl_s = itl_s
        self.trickle_s = trickle_s
        self.oversize_bytes = oversize_bytes
        self.seen: list[tuple[str | None, str]] = []
        self.url = ""
        self._arrivals = itertools.count()
        self._stack = ExitStack()

    def __enter__(self) -> FaultyServer:
        app = web.Application()
        app.router.add_post("/v1/completions", self._handle)
        app.router.add_post("/v1/chat/completions", self._handle)
        self.url = self._stack.enter_context(serve_in_thread(app, shutdown_timeout=0.2))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.close()

    def fault_for(self, request_id: str | None) -> str:
        """The fault a request with this id gets."""
        _, _, tail = (request_id or "").rpartition("-")
        index = int(tail) if tail.isdigit() else next(self._arrivals)
        return self.faults[index % len(self.faults)]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        request_id = request.headers.get("X-Request-Id")
        fault = self.fault_for(request_id)
        self.seen.append((request_id, fault))
        await request.read()
        chat = request.path.endswith("/chat/completions")
        if fault.startswith("http_"):
            return _error_response(int(fault.removeprefix("http_")))
        if fault == "json_reply":
            return web.json_response(self._whole_body(chat))
        if fault == "retry_after_date":
            when = datetime.now(UTC) + timedelta(seconds=RETRY_AFTER_S)
            return _error_response(429, retry_after=format_datetime(when, usegmt=True))
        if fault == "reset_before_headers":
            _reset(request)
            return web.Response()  # never sent: the connection is gone
        if fault == "stall_before_headers":
            await asyncio.sleep(STALL_S)
            return _error_response(504)
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        if fault == "gzip":
            resp.headers["Content-Encoding"] = "gzip"
        if request_id is not None:
            resp.headers["X-Request-Id"] = request_id
        await resp.prepare(request)
        behaviour: Callable[[web.Request, _Sse], Awaitable[None]] = getattr(self, f"_fault_{fault}")
        with suppress(ConnectionResetError):  # the client hung up: expected in fault tests
            await behaviour(request, _Sse(resp, chat))
        return resp

    def _whole_body(self, chat: bool) -> dict[str, Any]:
        text = WORD * self.tokens
        choice: dict[str, Any] = {"index": 0, "finish_reason": "length"}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return {
            "id": "fault-0",
            "object": "chat.completion" if chat else "text_completion",
            "created": 0,
            "model": "faulty",
            "choices": [choice],
            "usage": {"prompt_tokens": 1, "completion_tokens": self.tokens},
        }

    async def _tokens(self, sse: _Sse, n: int, *, finish: bool, gap: float | None = None) -> None:
        for k in range(n):
            if k:
                await asyncio.sleep(self.itl_s if gap is None else gap)
            await sse.token(WORD, "length" if finish and k == n - 1 else None)

    async def _fault_ok(self, _request: web.Request, sse: _Sse) -> None:
        await self._tokens(sse, self.tokens, finish=True)
        await sse.done()

    async def _fault_reset_mid_stream(self, request: web.Request, sse: _Sse) -> None:
        await self._tokens(sse, 2, finish=False)
        await asyncio.sleep(0.05)  # let the client read both chunks before the RST
        _reset(request)

    async def _fault_fin_mid_chunk(self, request: web.Request, sse: _Sse) -> None:
        await self._tokens(sse, 2, finish=False)
        transport = request.transport
        assert transport is not None
        transport.write(b"40\r\ndata: {")  # announces 64 bytes, sends 7
        transport.close()  # flushes, then FIN

    async def _fault_bad_chunk_size(self, request: web.Request, sse: _Sse) -> None:
        await sse.token(WORD, None)
        # The pause makes the token and the broken framing separate reads: the client
        # is already waiting for more body when the chunk-size line fails to parse.
        await asyncio.sleep(self.trickle_s)
        transport = request.transport
        assert transport is not None
        transport.write(b"zz\r\nnot a chunk\r\n")
        transport.close()  # flushes, then FIN

    async def _fault_stall(self, _request: web.Request, _sse: _Sse) -> None:
        await asyncio.sleep(STALL_S)

    async def _fault_malformed_sse(self, _request: web.Request, sse: _Sse) -> None:
        await sse.token(WORD, None)
        await sse.raw(b"data: {not json\n\n")
        await self._tokens(sse, max(self.tokens - 1, 1), finish=True)
        await sse.done()

    async def _fault_no_done(self, _request: web.Request, sse: _Sse) -> None:
        await self._tokens(sse, self.tokens, finish=False)
        await sse.end()

    async def _fault_finish_no_done(self, _request: web.Request, sse: _Sse) -> None:
        await self._tokens(sse, self.tokens, finish=True)
        await sse.end()

    async def _fault_oversized_chunk(self, _request: web.Request, sse: _Sse) -> None:
        empty = len(sse.chunk("", None)) - len(b"data: \n\n")
        await sse.raw(sse.chunk("x" * max(self.oversize_bytes - empty, 0), None))
        await sse.token("", "length")
        await sse.done()

    async def _fault_event_1mib(self, _request: web.Request, sse: _Sse) -> None:
        empty = len(sse.chunk("", None)) - len(b"data: ") - 2 * len(sse.newline)
        await sse.raw(sse.chunk("x" * ((1 << 20) - empty), None))
        await sse.token(WORD, "length")
        await sse.done()

    async def _fault_empty(self, _request: web.Request, sse: _Sse) -> None:
        await sse.token("", "stop")
        await sse.done()

    async def _fault_trickle(self, _request: web.Request, sse: _Sse) -> None:
        await self._tokens(sse, self.tokens, finish=True, gap=self.trickle_s)
        await sse.done()

    async def _fault_error_event(self, _request: web.Request, sse: _Sse) -> None:
        await sse.token(WORD, None)
        await sse.raw(b'data: {"error": {"message": "boom"}}\n\n')
        await sse.end()

    async def _fault_split_utf8(self, _request: web.Request, sse: _Sse) -> None:
        for k, text in enumerate(SPLIT_TOKENS):
            data = sse.chunk(text, "length" if k == len(SPLIT_TOKENS) - 1 else None)
            cut = _inside_a_character(data)
            for piece in (data[:cut], data[cut : cut + 1], data[cut + 1 :]):
                await sse.raw(piece)
                await asyncio.sleep(0.005)
        await sse.done()

    async def _fault_gzip(self, _request: web.Request, sse: _Sse) -> None:
        events = [
            sse.chunk(WORD, "length" if k == self.tokens - 1 else None) for k in range(self.tokens)
        ]
        await sse.raw(gzip.compress(b"".join(events) + b"data: [DONE]\n\n"))
        await sse.end()

    async def _fault_ignore_max_tokens(self, _request: web.Request, sse: _Sse) -> None:
        await self._tokens(sse, ENDLESS_TOKENS, finish=True)
        await sse.done()

    async def _fault_crlf(self, request: web.Request, sse: _Sse) -> None:
        sse.newline = b"\r\n"
        await self._fault_ok(request, sse)


class _Sse:
    """Writes OpenAI-shaped SSE events (completions or chat) to one response."""

    def __init__(self, resp: web.StreamResponse, chat: bool) -> None:
        self.resp = resp
        self.chat = chat
        self.newline = b"\n"

    def chunk(self, text: str, finish: str | None) -> bytes:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
        if self.chat:
            choice["delta"] = {"content": text}
            obj = "chat.completion.chunk"
        else:
            choice["text"] = text
            obj = "text_completion"
        body = {
            "id": "fault-0",
            "object": obj,
            "created": 0,
            "model": "faulty",
            "choices": [choice],
        }
        return b"data: " + orjson.dumps(body) + self.newline * 2

    async def token(self, text: str, finish: str | None) -> None:
        await self.resp.write(self.chunk(text, finish))

    async def raw(self, data: bytes) -> None:
        await self.resp.write(data)

    async def done(self) -> None:
        await self.resp.write(b"data: [DONE]" + self.newline * 2)
        await self.resp.write_eof()

    async def end(self) -> None:
        await self.resp.write_eof()


def _error_response(status: int, retry_after: str = "2") -> web.Response:
    body = {"error": {"message": f"fault http_{status}", "type": "server_error", "code": status}}
    headers = {"Retry-After": retry_after} if status == 429 else {}
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def _reset(request: web.Request) -> None:
    """Close the connection with a TCP RST (SO_LINGER 0), not a FIN."""
    transport = request.transport
    assert transport is not None
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _inside_a_character(data: bytes) -> int:
    """The offset just after the first byte of the first multi-byte UTF-8 character."""
    return next(i for i, b in enumerate(data) if b >= 0xC0) + 1


@pytest.fixture
def faulty_server() -> Iterator[Callable[..., FaultyServer]]:
    """A factory of started :class:`FaultyServer` s, all stopped after the test."""
    with ExitStack() as stack:

        def start(faults: Sequence[str], **options: Any) -> FaultyServer:
            return stack.enter_context(FaultyServer(faults, **options))

        yield start
