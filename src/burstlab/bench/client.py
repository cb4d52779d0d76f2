"""Sending one request to an OpenAI-compatible server and recording what happened.

:class:`HttpTarget` is the real target (one shared aiohttp session, no
connection cap, no retries, no redirects followed, no decompression); anything
with the same ``send`` method can stand in for it (tests use an in-memory fake).
``send`` fills the request's :class:`~burstlab.results.records.Record` with its
stamps, lengths and outcome, and never raises for a server's misbehaviour: every
failure is classified (RELIABILITY.md section 2.4).

A success can carry a note in ``error_subkind`` (as ``not_sent`` carries
``dropped_late``): ``not_streamed`` when a streaming request got one JSON body
instead of an event stream (RELIABILITY.md F24). The record is ``ok`` with
``first_s == end_s`` and no chunks, so its TTFT is its end-to-end time.
"""

from __future__ import annotations

import asyncio
import errno
import math
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import SimpleNamespace
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson
from aiohttp.http_exceptions import HttpProcessingError

from burstlab.bench.native import Delta, Dialect, NativeFormatError, Reader
from burstlab.bench.sse import SSEOversizeError, SSEParser
from burstlab.results.records import Record, clean_text

#: Most response bytes read from one request before it fails as ``stream_error.overrun``.
MAX_BODY_BYTES = 64 << 20

#: Content events read beyond ``max_tokens`` before a stream fails as
#: ``stream_error.overrun``: see :func:`event_cap`.
OVERRUN_SLACK = 64


def event_cap(max_tokens: int) -> int:
    """Most content (token-carrying) events read for a request of ``max_tokens``:
    ``max(2 * max_tokens, max_tokens + 64)`` (RELIABILITY.md F23). A server that
    ignores ``max_tokens`` is cut off there instead of streaming for ever, and a
    record's ``chunk_s``/``chunk_tokens`` never hold more entries than this. Twice
    the request leaves room for a server that splits tokens into several events."""
    n = max(max_tokens, 0)
    return max(2 * n, n + OVERRUN_SLACK)


class Clock:
    """Seconds since the run's ``t0`` on the monotonic ``perf_counter_ns`` clock,
    shared by every worker process on the host (CLOCK_MONOTONIC is system-wide)."""

    __slots__ = ("t0_ns",)

    def __init__(self, t0_ns: int) -> None:
        self.t0_ns = t0_ns

    def now(self) -> float:
        """Seconds since ``t0``."""
        return (time.perf_counter_ns() - self.t0_ns) / 1e9


@dataclass(slots=True)
class Outgoing:
    """One HTTP request ready to go: its body, id header, and whether the reply
    text must be kept (chat sessions append it to the history)."""

    body: bytes
    request_key: str
    keep_text: bool = False


class Target(Protocol):
    """Anything that can send one request and fill its record."""

    async def send(self, out: Outgoing, rec: Record) -> str:
        """Send ``out``, fill ``rec`` (stamps, lengths, outcome); return the reply text
        when ``out.keep_text`` (else an empty string)."""
        ...


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds: to connect, between reads (idle), for the whole request, and the
    grace for a ``[DONE]`` after a ``finish_reason``."""

    connect: float = 10.0
    idle: float = 60.0
    total: float = 600.0
    done_grace: float = 1.0


def session_timeout(timeouts: Timeouts) -> aiohttp.ClientTimeout:
    """aiohttp's timeouts for ``timeouts``: ``connect`` bounds name resolution plus
    the TCP (and TLS) connect, ``sock_read`` the gap between reads; the total deadline
    is the client's own.

    aiohttp rounds every deadline of more than ``ceil_threshold`` (default 5 s) up to
    the next whole second of the loop clock, so a 10 s connect timeout fired anywhere
    from 10.0 to 11.0 s (the issue's "overshoots by up to 0.77 s"). The threshold is
    set to infinity: no timeout is rounded.
    """
    return aiohttp.ClientTimeout(
        total=None,
        connect=timeouts.connect,
        sock_connect=timeouts.connect,
        sock_read=timeouts.idle,
        ceil_threshold=math.inf,
    )


class _RequestError(Exception):
    def __init__(self, kind: str, subkind: str, text: str = "") -> None:
        super().__init__(text)
        self.kind = kind
        self.subkind = subkind
        self.text = text


class HttpTarget:
    """Streams requests to ``url + path`` over one aiohttp session.

    Use as ``async with HttpTarget(...) as target``. ``headers`` may hold an
    ``Authorization`` value; it is sent and never stored anywhere else. Responses
    are read as OpenAI ``/v1`` chunks, or, given a native ``dialect``
    (:mod:`burstlab.bench.native`), framed and read in that engine's own protocol.
    """

    def __init__(
        self,
        url: str,
        path: str,
        clock: Clock,
        *,
        headers: dict[str, str] | None = None,
        timeouts: Timeouts = Timeouts(),
        insecure: bool = False,
        stream: bool = True,
        keepalive_s: float = 15.0,
        dialect: Dialect | None = None,
    ) -> None:
        self.endpoint = url.rstrip("/") + path
        self.dialect = dialect
        #: Seconds an idle connection is kept for reuse: below the server's own idle
        #: close, or a request may go out on a connection the server is closing.
        self.keepalive_s = keepalive_s
        self.clock = clock
        self.timeouts = timeouts
        self.stream = stream
        self._headers = {
            "Content-Type": "application/json",
            "Accept-Encoding": "identity",
            **(headers or {}),
        }
        self._insecure = insecure
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpTarget:
        trace = aiohttp.TraceConfig()
        trace.on_request_headers_sent.append(self._on_headers_sent)
        trace.on_connection_queued_start.append(self._on_queued_start)
        trace.on_connection_queued_end.append(self._on_queued_end)
        ssl_ctx: ssl.SSLContext | bool = False if self._insecure else ssl.create_default_context()
        connector = aiohttp.TCPConnector(
            limit=0,
            limit_per_host=0,
            ssl=ssl_ctx,
            ttl_dns_cache=300,
            timeout_ceil_threshold=math.inf,
            keepalive_timeout=self.keepalive_s,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            trace_configs=[trace],
            auto_decompress=False,
            timeout=session_timeout(self.timeouts),
            read_bufsize=1 << 16,
            max_line_size=1 << 16,  # the status line, header lines and chunk sizes
            max_field_size=1 << 16,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def _on_headers_sent(
        self, _s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: object
    ) -> None:
        rec: Record = ctx.trace_request_ctx
        rec.sent_s = self.clock.now()

    async def _on_queued_start(
        self, _s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: object
    ) -> None:
        ctx.queued_at = time.perf_counter()

    async def _on_queued_end(
        self, _s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: object
    ) -> None:
        rec: Record = ctx.trace_request_ctx
        rec.conn_queued_s += time.perf_counter() - ctx.queued_at

    async def send(self, out: Outgoing, rec: Record) -> str:
        """Send one request and classify its outcome into ``rec``."""
        assert self._session is not None, "use HttpTarget as an async context manager"
        asked = rec.output_tokens
        if rec.output_tokens_cap is not None:
            asked = min(asked, rec.output_tokens_cap)
        state = _Stream(out.keep_text, event_cap(asked))
        if self.dialect is not None:
            state.reader = self.dialect.reader()
        headers = {**self._headers, "X-Request-Id": out.request_key}
        deadline = asyncio.timeout(self.timeouts.total)
        try:
            async with deadline:
                await self._exchange(out.body, headers, rec, state)
        except _RequestError as f:
            rec.fail(f.kind, f.subkind, f.text)
        except TimeoutError as exc:
            if deadline.expired():
                rec.fail("timeout", "total", f"no end after {self.timeouts.total:g} s")
            else:
                rec.fail(*_timeout_kind(exc, state))
        except aiohttp.ClientError as exc:
            rec.fail(*_client_error_kind(exc, rec))
        except HttpProcessingError as exc:
            # aiohttp's pure-Python parser (AIOHTTP_NO_EXTENSIONS) hands a read waiting on
            # the body its raw parse error (TransferEncodingError), not a ClientError.
            rec.fail("stream_error", "protocol", _one_line(exc))
        except OSError as exc:
            kind = ("connect", "emfile") if exc.errno == errno.EMFILE else ("reset", "stale_conn")
            rec.fail(*kind, f"{type(exc).__name__}: {exc}")
        if rec.outcome == "failed" and rec.end_s is None:
            rec.end_s = self.clock.now()
        state.finish(rec)
        return state.text()

    async def _exchange(
        self, body: bytes, headers: dict[str, str], rec: Record, state: _Stream
    ) -> None:
        assert self._session is not None
        async with self._session.post(
            self.endpoint,
            data=body,
            headers=headers,
            trace_request_ctx=rec,
            allow_redirects=False,
        ) as resp:
            rec.http_status = resp.status
            if resp.status >= 300:
                await _http_failure(resp, rec)
                return
            encoding = resp.headers.get("Content-Encoding", "").strip().lower()
            if encoding not in ("", "identity"):
                # Asked for identity; a compressed body is never inflated (a 64 KiB gzip
                # bomb is 64 MiB inflated) nor parsed as text.
                raise _RequestError(
                    "stream_error",
                    "bad_encoding",
                    f"Content-Encoding {clean_text(encoding)[:64]!r} on a request that "
                    "sent Accept-Encoding: identity",
                )
            unwatch = _watch_close(resp)
            try:
                if self.stream and not _is_json(resp.content_type):
                    await self._read_stream(resp, rec, state)
                else:
                    # A JSON body to a streaming request: a server that does not stream.
                    state.not_streamed = self.stream
                    await self._read_body(resp, rec, state)
            finally:
                unwatch()

    async def _read_stream(self, resp: aiohttp.ClientResponse, rec: Record, state: _Stream) -> None:
        dialect = self.dialect
        parser = SSEParser() if dialect is None else dialect.framer()
        read = state.event if dialect is None else state.native
        total = 0
        content = resp.content
        clock = self.clock
        while True:
            if state.finish_reason is not None and not state.done:
                try:
                    async with asyncio.timeout(self.timeouts.done_grace):
                        chunk = await content.readany()
                except TimeoutError:
                    rec.done_missing = True
                    return
            else:
                chunk = await content.readany()
            if not chunk:
                if dialect is not None and dialect.ends_at_eof and not parser.pending:
                    state.done = True  # the protocol's only end: the body's
                    state.end = clock.now()
                return
            now = clock.now()
            total += len(chunk)
            if total > MAX_BODY_BYTES:
                raise _RequestError(
                    "stream_error", "overrun", f"body passed {MAX_BODY_BYTES} bytes"
                )
            try:
                events = parser.feed(chunk)
            except SSEOversizeError as exc:
                raise _RequestError("stream_error", "oversize", str(exc)) from None
            if len(events) > 1:
                rec.coalesced_events += len(events) - 1
            for data in events:
                if read(data, now, rec):
                    return

    async def _read_body(self, resp: aiohttp.ClientResponse, rec: Record, state: _Stream) -> None:
        raw = await resp.content.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            raise _RequestError("stream_error", "overrun", f"body passed {MAX_BODY_BYTES} bytes")
        now = self.clock.now()
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _RequestError("stream_error", "bad_json", f"{exc}: {raw[:200]!r}") from None
        if state.reader is None:
            state.whole(obj, now, rec)
        else:
            state.native_whole(obj, now, rec)


class _Stream:
    """What one response has delivered so far."""

    __slots__ = (
        "done",
        "end",
        "finish_reason",
        "keep",
        "max_events",
        "not_streamed",
        "parts",
        "prompt_tokens",
        "reader",
        "tokens",
        "usage",
    )

    def __init__(self, keep_text: bool, max_events: int) -> None:
        self.keep = keep_text
        self.max_events = max_events
        self.parts: list[str] = []
        self.tokens = 0
        self.usage: int | None = None
        self.prompt_tokens: int | None = None
        self.finish_reason: str | None = None
        self.done = False
        self.end: float | None = None
        self.not_streamed = False
        #: A native dialect's reader of this response (None: OpenAI chunks).
        self.reader: Reader | None = None

    def event(self, data: bytes, now: float, rec: Record) -> bool:
        """Take one SSE event; return True when the stream is complete."""
        if data == b"[DONE]":
            self.done = True
            self.end = now
            return True
        obj = _event_object(data)
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self._usage(usage)
        before = rec.first_s
        choices = obj.get("choices")
        if choices and isinstance(choices, list) and isinstance(choices[0], dict):
            choice = choices[0]
            text = _choice_text(choice)
            if text:
                if self.tokens >= self.max_events:
                    raise _RequestError(
                        "stream_error",
                        "overrun",
                        f"more than {self.max_events} content events for "
                        f"{rec.output_tokens} requested tokens",
                    )
                if rec.first_s is None:
                    rec.first_s = now
                rec.chunk_s.append(now)
                rec.chunk_tokens.append(1)
                self.tokens += 1
                if self.keep:
                    self.parts.append(text)
            reason = choice.get("finish_reason")
            if reason is not None:
                self.finish_reason = str(reason)
                self.end = now
        timings = obj.get("timings")
        if isinstance(timings, dict):
            server_timings(timings, rec, first=before is None and rec.first_s is not None)
        return False

    def native(self, data: bytes, now: float, rec: Record) -> bool:
        """Take one event of a native dialect; return True when the stream is complete."""
        assert self.reader is not None
        if data == b"[DONE]":  # SGLang's end; the others end on an event of their own
            self.done = True
            self.end = now
            return True
        obj = _event_object(data)
        try:
            delta = self.reader.event(obj)
        except NativeFormatError as exc:
            raise _RequestError("stream_error", "bad_json", f"{exc}: {data[:200]!r}") from None
        self._apply(delta, now, rec)
        return delta.done

    def native_whole(self, obj: Any, now: float, rec: Record) -> None:
        """Take a native dialect's non-streamed body: one token unless the server counts."""
        assert self.reader is not None
        if isinstance(obj, dict) and obj.get("error") is not None:
            text = orjson.dumps(obj["error"])[:2048].decode(errors="replace")
            raise _RequestError("stream_error", "server_error_event", text)
        try:
            delta = self.reader.whole(obj)
        except NativeFormatError as exc:
            raise _RequestError("stream_error", "bad_json", str(exc)) from None
        if delta.completion_tokens is not None:
            self.usage = delta.completion_tokens
        if delta.prompt_tokens is not None:
            self.prompt_tokens = delta.prompt_tokens
        if delta.text or self.usage:
            rec.first_s = now
            self.tokens = 1 if self.usage is None else self.usage
            if self.keep:
                self.parts.append(delta.text)
        self.finish_reason = delta.finish_reason or "stop"
        self.done = True
        self.end = now

    def _apply(self, delta: Delta, now: float, rec: Record) -> None:
        if delta.completion_tokens is not None:
            self.usage = delta.completion_tokens
        if delta.prompt_tokens is not None:
            self.prompt_tokens = delta.prompt_tokens
        if delta.tokens > 0:
            if self.tokens + delta.tokens > self.max_events:
                raise _RequestError(
                    "stream_error",
                    "overrun",
                    f"more than {self.max_events} tokens streamed for "
                    f"{rec.output_tokens} requested",
                )
            if rec.first_s is None:
                rec.first_s = now
            rec.chunk_s.append(now)
            rec.chunk_tokens.append(delta.tokens)
            self.tokens += delta.tokens
            if self.keep and delta.text:
                self.parts.append(delta.text)
        if delta.finish_reason is not None:
            self.finish_reason = delta.finish_reason
            self.end = now
        if delta.done:
            self.done = True
            self.end = now

    def whole(self, obj: Any, now: float, rec: Record) -> None:
        """Take a non-streaming response body."""
        if isinstance(obj, dict) and obj.get("error") is not None:
            text = orjson.dumps(obj["error"])[:2048].decode(errors="replace")
            raise _RequestError("stream_error", "server_error_event", text)
        if not isinstance(obj, dict) or not isinstance(obj.get("choices"), list):
            raise _RequestError("stream_error", "bad_json", "response has no 'choices' list")
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self._usage(usage)
        timings = obj.get("timings")
        if isinstance(timings, dict):
            server_timings(timings, rec)
        choice = obj["choices"][0] if obj["choices"] else {}
        if not isinstance(choice, dict):
            raise _RequestError("stream_error", "bad_json", "a choice is not an object")
        message = choice.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        text = choice.get("text") or content or ""
        if text:
            rec.first_s = now
            self.tokens = 1 if self.usage is None else self.usage
            if self.keep:
                self.parts.append(str(text))
        self.finish_reason = str(choice.get("finish_reason") or "stop")
        self.done = True
        self.end = now

    def _usage(self, usage: dict[str, Any]) -> None:
        completion = usage.get("completion_tokens")
        prompt = usage.get("prompt_tokens")
        if isinstance(completion, int):
            self.usage = completion
        if isinstance(prompt, int):
            self.prompt_tokens = prompt

    def finish(self, rec: Record) -> None:
        """Set the record's lengths, end and outcome from what was received."""
        rec.finish_reason = self.finish_reason
        rec.done_missing = self.finish_reason is not None and not self.done
        rec.input_tokens_achieved = self.prompt_tokens
        if self.usage is not None:
            rec.output_tokens_achieved = self.usage
            rec.tokens_source = "usage"
        else:
            rec.output_tokens_achieved = self.tokens
            rec.tokens_source = "events"
        if rec.outcome == "failed":
            return
        rec.end_s = self.end
        if not (self.done or self.finish_reason is not None):
            sub = "after_tokens" if self.tokens else "no_terminal"
            rec.fail("truncated", sub, "the stream ended without [DONE] or a finish_reason")
        elif not self.tokens and not self.usage:
            rec.fail("empty", "no_tokens", "the response carried no tokens")
        else:
            rec.outcome = "ok"
            if self.not_streamed:
                rec.error_subkind = "not_streamed"

    def text(self) -> str:
        return "".join(self.parts)


def _event_object(data: bytes) -> dict[str, Any]:
    """One event's JSON object; bad JSON, a non-object or a server's error event is a
    ``stream_error``."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise _RequestError("stream_error", "bad_json", f"{exc}: {data[:200]!r}") from None
    if not isinstance(obj, dict):
        raise _RequestError("stream_error", "bad_json", f"not an object: {data[:200]!r}")
    if obj.get("error") is not None:
        raise _RequestError(
            "stream_error", "server_error_event", data[:2048].decode(errors="replace")
        )
    return obj


def server_timings(timings: dict[str, Any], rec: Record, *, first: bool = False) -> None:
    """Copy a server's own per-request ``timings`` (llama.cpp: ``prompt_ms``,
    ``predicted_ms``, ``prompt_n``, ``cache_n``, ``predicted_n``) into ``rec``; a
    field that is missing or not a finite number is left unset. A server that sends
    timings with every chunk (``timings_per_token``) overwrites them: the last (the
    final chunk's) stays, and the chunk that is the ``first`` to carry a token also
    sets ``server_first_ms``."""

    def number(key: str) -> float | None:
        value = timings.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value) if math.isfinite(value) else None

    def count(key: str) -> int | None:
        value = number(key)
        return None if value is None else int(value)

    rec.server_prompt_ms = number("prompt_ms")
    rec.server_predicted_ms = number("predicted_ms")
    rec.server_prompt_n = count("prompt_n")
    rec.server_cache_n = count("cache_n")
    rec.server_predicted_n = count("predicted_n")
    if first and rec.server_first_ms is None and _carries_token(timings):
        prompt, predicted = rec.server_prompt_ms, rec.server_predicted_ms
        if prompt is not None:
            rec.server_first_ms = prompt + (predicted or 0.0)


def _carries_token(timings: dict[str, Any]) -> bool:
    """Whether a chunk's timings come after a token was generated (prompt done)."""
    n = timings.get("predicted_n")
    return isinstance(n, int | float) and not isinstance(n, bool) and n >= 1


def _is_json(content_type: str) -> bool:
    """Whether a response's media type is JSON (``application/json``, ``...+json``)."""
    return content_type == "application/json" or content_type.endswith("+json")


def _choice_text(choice: dict[str, Any]) -> str:
    """Token text of one choice: completions ``text``, or a chat delta's content or
    reasoning (a role-only delta carries no token)."""
    text = choice.get("text")
    if text:
        return str(text)
    delta = choice.get("delta")
    if isinstance(delta, dict):
        for key in ("content", "reasoning_content", "reasoning"):
            value = delta.get(key)
            if value:
                return str(value)
    return ""


async def _http_failure(resp: aiohttp.ClientResponse, rec: Record) -> None:
    status = resp.status
    kind = (
        "http_429"
        if status == 429
        else "http_3xx"
        if status < 400
        else "http_4xx"
        if status < 500
        else "http_5xx"
    )
    if kind == "http_3xx":
        location = resp.headers.get("Location")
        rec.location = None if location is None else clean_text(safe_location(location))
    retry = resp.headers.get("Retry-After")
    if retry is not None:
        rec.retry_after_s = retry_after_seconds(retry)
    try:
        body = await asyncio.wait_for(resp.content.read(2048), 5.0)
    except (TimeoutError, aiohttp.ClientError):
        body = b""
    text = without_credentials(body.decode(errors="replace"))
    raise _RequestError(kind, str(status), f"HTTP {status}: {text}")


#: ``scheme://user:password@`` (or ``scheme://user@``) inside free text; the last ``@``
#: before the path ends the credentials, as in :func:`urllib.parse.urlsplit`.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s]*@")


def without_credentials(text: str) -> str:
    """``text`` with the ``user:password@`` part of every URL in it removed (a
    server's error body may echo a URL with credentials; they are never stored)."""
    return _USERINFO.sub(r"\1", text)


def safe_location(location: str) -> str:
    """A redirect's ``Location`` without credentials: ``http://u:p@h:1/x`` is
    ``http://h:1/x``; scheme-relative ``//u:p@h/x`` is ``//h/x``; a relative
    location passes through."""
    try:
        parts = urlsplit(location)
    except ValueError:  # e.g. a bad IPv6 literal: fall back to the text rule
        return without_credentials(location)
    if "@" in parts.netloc:
        parts = parts._replace(netloc=parts.netloc.rpartition("@")[2])
        location = urlunsplit(parts)
    return without_credentials(location)


def retry_after_seconds(value: str, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header in seconds: delay-seconds (``"2"``), or an HTTP-date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``) as seconds from ``now`` (default: the
    wall clock), never below 0. Anything else (``"soon"``, a negative or non-finite
    number) is None."""
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC with no claim about the local zone (RFC 5322)
        when = when.replace(tzinfo=UTC)
    start = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - start).total_seconds())


def _watch_close(resp: aiohttp.ClientResponse) -> Callable[[], None]:
    """Make the loss of ``resp``'s connection end a read of its body that nothing else
    would end; return the function that stops watching (call it when the body is read).

    aiohttp's C parser (``_http_parser.pyx``), on bytes it cannot parse inside the body
    (an invalid chunk-size line such as ``zz``), forgets the body's StreamReader and
    raises; the ResponseHandler then closes the transport and puts the error on its own
    queue of *messages* (read only up to the headers, long done), and that
    ``set_exception`` also drops the ``sock_read`` timer, which only ``data_received``
    re-arms. On the close, ``connection_lost`` finds no body in the parser (so no
    "Not enough data" error) and its queue already failed (so no
    ``ServerDisconnectedError``), and forgets the body too. The StreamReader gets no
    data, no end and no error, and a read of it waits for the total deadline
    (``timeout.total``), however short the idle timeout, whether the bad bytes came in
    a read of their own or with a token. Only bad bytes in the same read as the headers
    were classified: the response never starts, and aiohttp raises
    ``ClientResponseError(400)`` from the request itself. (aiohttp's pure-Python parser
    does put its error on the body; :meth:`HttpTarget.send` catches it.)

    The watch is a done-callback on the connection's ``closed`` future: when the
    connection is lost with the body neither ended nor failed, the body fails with
    ``stream_error.protocol`` and aiohttp's parse error as its text (the error on the
    connection's queue), so the read in progress raises at once and the tokens already
    received stay in the record. A callback rather than a second task per read: the
    read loop runs once per event. With no error on the connection (which nothing in
    aiohttp produces today) the body is counted cut short: ``reset.payload_incomplete``.
    """
    conn = resp.connection
    proto = conn.protocol if conn is not None else None
    content = resp.content
    if proto is None or content.is_eof():
        return _nothing

    def on_closed(_fut: object = None) -> None:
        if content.is_eof() or content.exception() is not None:
            return  # ended or failed as it should: aiohttp saw to it
        err = proto.exception()
        if err is None:
            failure = _RequestError(
                "reset", "payload_incomplete", "the connection closed inside the body"
            )
        else:
            failure = _RequestError("stream_error", "protocol", _one_line(err))
        content.set_exception(failure)

    closed = proto.closed
    if closed is None:  # lost already: connection_lost ran before anyone asked
        on_closed()
        return _nothing
    # ``closed`` lives as long as the connection, which keep-alive reuses for many
    # requests: one consumer of its result at most (else a connection lost with an
    # error would log "Future exception was never retrieved", since nothing else
    # awaits it before the session closes), and each request's watch removed again.
    closed.remove_done_callback(_consume)
    closed.add_done_callback(_consume)
    closed.add_done_callback(on_closed)

    def unwatch() -> None:
        closed.remove_done_callback(on_closed)

    return unwatch


def _one_line(exc: BaseException) -> str:
    """``Class: message`` on one line (aiohttp's parse errors span several)."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def _nothing() -> None:
    pass


def _consume(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()


def _timeout_kind(exc: BaseException, state: _Stream) -> tuple[str, str, str]:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "connect", "timeout", str(exc) or "connect timeout"
    sub = "idle" if state.tokens else "first_byte"
    return "timeout", sub, f"no data for the idle timeout ({type(exc).__name__})"


def _client_error_kind(exc: aiohttp.ClientError, rec: Record) -> tuple[str, str, str]:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "connect", "tls_verify", text
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "connect", "dns", text
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        return "connect", "tls_handshake", text
    if isinstance(exc, aiohttp.ClientConnectorError):
        sub = "emfile" if exc.os_error.errno == errno.EMFILE else "refused"
        return "connect", sub, text
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "reset", "mid_stream" if _peer_reset(exc) else "payload_incomplete", text
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
        return "reset", "before_headers" if rec.http_status is None else "mid_stream", text
    if isinstance(exc, aiohttp.ClientResponseError):
        return "stream_error", "protocol", text
    return "stream_error", "protocol", text


#: aiohttp's ClientPayloadError names the socket error that cut the body
#: (``... . ConnectionResetError(104, 'Connection reset by peer')``) and nothing when the
#: peer closed cleanly (a FIN inside the body): the only place the two differ.
_SOCKET_ERROR = re.compile(r"\b\w*Error\(\d+,")


def _peer_reset(exc: aiohttp.ClientPayloadError) -> bool:
    """Whether an incomplete body was cut by a reset (RST, a socket error) rather than
    by the server closing its side cleanly in the middle of the body (FIN)."""
    return _SOCKET_ERROR.search(str(exc)) is not None


def failure_text(rec: Record) -> str:
    """A one-line description of a failed record, for logs and the console."""
    where = f"{rec.error_kind}.{rec.error_subkind}" if rec.error_subkind else str(rec.error_kind)
    return clean_text(f"request {rec.request_id}: {where}: {rec.error_text or ''}")
