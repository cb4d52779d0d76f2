"""An OpenAI-compatible server with fixed timing: the embedded target of ``burstlab bench``.

Every request is answered on an absolute schedule measured from the moment its
handler starts (``t_recv``, on ``time.perf_counter``): content token ``k``
(0-based) is written at ``t_recv + ttft + k * itl`` seconds, whatever the load,
so a benchmark client's measurements can be checked against known truth. The
server does no per-request work beyond parsing the body and formatting small
JSON chunks, so one process holds hundreds of concurrent streams.

Routes: ``GET /health``, ``GET /v1/models``, ``POST /v1/completions`` and
``POST /v1/chat/completions`` (streaming SSE or one JSON body). Prompt tokens
are counted with the fallback tokenizer (one per whitespace-separated word) or
as the length of a token-id list; response length follows ``max_tokens``,
``ignore_eos`` and ``min_tokens`` as :func:`response_length` describes.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal, Protocol

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from burstlab.core.errors import InputError, invalid
from burstlab.workload.prompts import count_fallback_tokens

try:
    import uvloop
except ImportError:  # pragma: no cover - Windows has no uvloop
    uvloop = None  # type: ignore[assignment]

Finish = Literal["length", "stop"]

#: Words the responses are made of; each is a single token in common BPE vocabularies.
WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog")
#: ``max_tokens`` when a completions request gives none (OpenAI's default).
COMPLETIONS_DEFAULT_MAX_TOKENS = 16
#: Largest response accepted, in tokens: bounds the memory a non-streamed reply takes.
MAX_RESPONSE_TOKENS = 1 << 20
#: Largest request body, in bytes: room for token-id prompts of long contexts.
MAX_BODY_BYTES = 64 << 20
#: Listen backlog: hundreds of clients connect at once when a burst starts.
BACKLOG = 4096

_DONE = b"data: [DONE]\n\n"
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_SPEC_VALUE = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s)?\s*")


class FixedTiming(BaseModel):
    """The timing of every response.

    ``ttft`` is seconds from receiving a request to its first content token;
    ``itl`` is seconds between consecutive tokens; ``eos`` is the response
    length, in tokens, a request gets when it does not force one (the
    "natural" end of sequence of a model).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    ttft: float = Field(default=0.05, ge=0)
    itl: float = Field(default=0.01, ge=0)
    eos: int = Field(default=64, ge=1)


def parse_fixed(spec: str) -> FixedTiming:
    """:class:`FixedTiming` from ``"ttft=0.05,itl=0.01[,eos=N]"`` (the ``--fixed`` option).

    Times are seconds, optionally with an ``s`` or ``ms`` suffix (``ttft=50ms``).
    Unknown keys, repeated keys and bad values raise :class:`InputError`.
    """
    fields: dict[str, float | int] = {}
    known = tuple(FixedTiming.model_fields)
    for part in spec.split(","):
        key, sep, value = (s.strip() for s in part.partition("="))
        if not sep or not key:
            raise InputError(
                f"{part.strip()!r} is not key=value (example: ttft=0.05,itl=0.01,eos=64)",
                field="--fixed",
            )
        if key not in known:
            raise InputError(f"unknown key {key!r}; known: {', '.join(known)}", field="--fixed")
        if key in fields:
            raise InputError(f"key {key!r} given twice", field="--fixed")
        fields[key] = _spec_int(key, value) if key == "eos" else _spec_seconds(key, value)
    try:
        return FixedTiming.model_validate(fields)
    except ValidationError as exc:
        raise invalid(exc, option="--fixed") from None


def _spec_seconds(key: str, value: str) -> float:
    match = _SPEC_VALUE.fullmatch(value)
    if match is None:
        raise InputError(
            f"{key}={value!r} is not a time in seconds (examples: 0.05, 50ms)", field="--fixed"
        )
    seconds = float(match.group(1))
    return seconds / 1000 if match.group(2) == "ms" else seconds


def _spec_int(key: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise InputError(f"{key}={value!r} is not a whole number", field="--fixed") from None


def response_length(
    max_tokens: int | None, *, eos: int, min_tokens: int | None = None, ignore_eos: bool = False
) -> tuple[int, Finish]:
    """Tokens a response has, and why it ends.

    A response is cut at ``max_tokens`` (``"length"``). Without ``ignore_eos``
    it ends earlier at its natural length ``max(eos, min_tokens)`` (``"stop"``),
    as a model would at its end-of-sequence token: ``min_tokens`` holds the
    end off, as vLLM's does. ``max_tokens=None`` (a chat request with no
    limit) ends at the natural length, or is cut there (``"length"``, standing
    in for the context limit) when ``ignore_eos`` is set.
    """
    natural = max(eos, min_tokens or 0)
    if max_tokens is None:
        return natural, "length" if ignore_eos else "stop"
    if ignore_eos or (min_tokens is not None and min_tokens >= max_tokens):
        return max_tokens, "length"
    if natural < max_tokens:
        return natural, "stop"
    return max_tokens, "length"


class BadRequestError(ValueError):
    """A request body the server refuses with 400; the message says why."""


@dataclass(frozen=True, slots=True)
class Ask:
    """What one request asked for, once validated."""

    stream: bool
    include_usage: bool
    prompt_tokens: int
    tokens: int
    finish: Finish


def parse_request(body: object, *, chat: bool, eos: int) -> Ask:
    """Validate a decoded JSON body of ``/v1/completions`` (``chat=False``) or
    ``/v1/chat/completions``; :class:`BadRequestError` says what is wrong.

    A completions ``prompt`` is text, a list of token ids, a list of texts or a
    list of token-id lists; a list of prompts counts the sum of their tokens
    and is answered with one choice (a mock has no use for ``n`` choices).
    Chat takes ``max_completion_tokens``, else ``max_tokens``, else no limit;
    completions default to 16 tokens, as OpenAI's do.
    """
    if not isinstance(body, dict):
        raise BadRequestError("the body must be a JSON object")
    if chat:
        prompt_tokens = _chat_tokens(body.get("messages"))
        has_new = body.get("max_completion_tokens") is not None
        field = "max_completion_tokens" if has_new else "max_tokens"
        limit = body.get(field)
        default = None
    else:
        prompt_tokens = _prompt_tokens(body.get("prompt"))
        field, limit, default = "max_tokens", body.get("max_tokens"), COMPLETIONS_DEFAULT_MAX_TOKENS
    max_tokens = default if limit is None else _int(limit, field, low=1, high=MAX_RESPONSE_TOKENS)
    min_tokens = body.get("min_tokens")
    if min_tokens is not None:
        min_tokens = _int(min_tokens, "min_tokens", low=0, high=MAX_RESPONSE_TOKENS)
    ignore_eos = _bool(body.get("ignore_eos"), "ignore_eos")
    stream = _bool(body.get("stream"), "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise BadRequestError("'stream_options' must be an object")
    include_usage = stream and _bool((options or {}).get("include_usage"), "include_usage")
    tokens, finish = response_length(
        max_tokens, eos=eos, min_tokens=min_tokens, ignore_eos=ignore_eos
    )
    return Ask(stream, include_usage, prompt_tokens, tokens, finish)


def _int(value: object, name: str, *, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise BadRequestError(f"{name!r} must be an integer in [{low}, {high}], got {value!r}")
    return value


def _bool(value: object, name: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BadRequestError(f"{name!r} must be true or false, got {value!r}")
    return value


def _prompt_tokens(prompt: object) -> int:
    if isinstance(prompt, str):
        return count_fallback_tokens(prompt)
    if isinstance(prompt, list) and prompt:
        if all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in prompt):
            return len(prompt)
        if all(isinstance(p, str) for p in prompt):
            return sum(count_fallback_tokens(p) for p in prompt)
        if all(isinstance(p, list) and p for p in prompt):
            return sum(_prompt_tokens(p) for p in prompt)
    raise BadRequestError(
        "'prompt' must be a string, a non-empty list of token ids, or a list of either"
    )


def _chat_tokens(messages: object) -> int:
    if not isinstance(messages, list) or not messages:
        raise BadRequestError("'messages' must be a non-empty list")
    total = 0
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequestError(f"messages[{i}] must be an object with a 'role'")
        content = message.get("content")
        if isinstance(content, str):
            total += count_fallback_tokens(content)
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict):
                    raise BadRequestError(f"messages[{i}].content parts must be objects")
                text = part.get("text")
                if isinstance(text, str):
                    total += count_fallback_tokens(text)
        elif content is not None:
            raise BadRequestError(f"messages[{i}].content must be a string, a list or null")
    return total


def _error(status: int, message: str, headers: dict[str, str]) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": status}}
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


async def sleep_until(target: float) -> None:
    """Sleep until ``target`` on ``time.perf_counter`` (seconds); return at once if past.

    Schedules are absolute so that lateness in one step never carries into the next.
    """
    delay = target - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


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


class FixedSource:
    """Token k at ``t_recv + ttft + k * itl``, whatever the load."""

    def __init__(self, timing: FixedTiming) -> None:
        self.timing = timing
        self.requests = 0

    async def open(self, ask: Ask, t_recv: float) -> AsyncIterator[float]:
        self.requests += 1
        first, itl = t_recv + self.timing.ttft, self.timing.itl

        async def times() -> AsyncIterator[float]:
            for k in range(ask.tokens):
                yield first + k * itl

        return times()

    def metrics(self) -> dict[str, float]:
        return {"requests_total": self.requests}


class _Handlers:
    """The routes of one app: its token timing, model name, request counter and log file."""

    __slots__ = ("_ids", "_log", "log_path", "model", "source", "timing")

    def __init__(
        self, timing: FixedTiming, model: str, log_path: Path | None, source: TokenSource
    ) -> None:
        self.timing = timing
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
            ask = parse_request(orjson.loads(await request.read()), chat=chat, eos=self.timing.eos)
        except ValueError as exc:  # orjson.JSONDecodeError and BadRequestError
            return _error(400, str(exc), headers)
        try:
            times = await self.source.open(ask, t_recv)
        except RefusedError as refused:
            if refused.retry_after_s is not None:
                headers["Retry-After"] = f"{refused.retry_after_s:g}"
            return _error(refused.status, refused.message, headers)
        chunks = _Chunks(chat, f"{'chatcmpl' if chat else 'cmpl'}-{next(self._ids)}", self.model)
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
        self, resp: web.StreamResponse, ask: Ask, chunks: _Chunks, times: AsyncIterator[float]
    ) -> None:
        """Write the SSE events of a prepared response, each token at its time."""
        if chunks.chat:
            # Role first, before any token, as OpenAI does: a client must not take it as TTFT.
            await resp.write(chunks.role())
        last = ask.tokens - 1
        k = 0
        async for when in times:
            await sleep_until(when)
            finish = ask.finish if k == last else None
            await resp.write(chunks.token(WORDS[k % len(WORDS)] + " ", finish))
            k += 1
        if ask.include_usage:
            await resp.write(chunks.usage(ask))
        await resp.write(_DONE)

    def _finished(self, request_id: str | None, tokens: int) -> None:
        """Append one line per finished request, flushed, so it survives a crash of the client."""
        if self._log is None:
            return
        line = {"request_id": request_id, "t_end": time.time(), "tokens": tokens}
        self._log.write(orjson.dumps(line) + b"\n")
        self._log.flush()


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


class _Chunks:
    """Formats the JSON of one response in OpenAI's shapes (completions or chat)."""

    __slots__ = ("_base", "chat")

    def __init__(self, chat: bool, response_id: str, model: str) -> None:
        self.chat = chat
        obj = "chat.completion.chunk" if chat else "text_completion"
        self._base = {"id": response_id, "object": obj, "created": int(time.time()), "model": model}

    def role(self) -> bytes:
        delta = {"role": "assistant", "content": ""}
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        return _event({**self._base, "choices": [choice]})

    def token(self, text: str, finish: Finish | None) -> bytes:
        choice: dict[str, Any] = {"index": 0}
        if self.chat:
            choice["delta"] = {"content": text}
        else:
            choice["text"] = text
        choice["logprobs"] = None
        choice["finish_reason"] = finish
        return _event({**self._base, "choices": [choice]})

    def usage(self, ask: Ask) -> bytes:
        return _event({**self._base, "choices": [], "usage": _usage(ask)})

    def whole(self, ask: Ask) -> bytes:
        """The non-streamed body: all tokens in one choice, and usage."""
        text = "".join(WORDS[k % len(WORDS)] + " " for k in range(ask.tokens))
        choice: dict[str, Any] = {"index": 0}
        if self.chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        choice["logprobs"] = None
        choice["finish_reason"] = ask.finish
        obj = "chat.completion" if self.chat else "text_completion"
        body = {**self._base, "object": obj, "choices": [choice], "usage": _usage(ask)}
        return orjson.dumps(body)


def _usage(ask: Ask) -> dict[str, int]:
    return {
        "prompt_tokens": ask.prompt_tokens,
        "completion_tokens": ask.tokens,
        "total_tokens": ask.prompt_tokens + ask.tokens,
    }


def _event(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def make_app(
    timing: FixedTiming,
    model: str = "burstlab-fixed",
    log_path: Path | None = None,
    *,
    source: TokenSource | None = None,
) -> web.Application:
    """The fixed-timing server as an aiohttp application.

    ``model`` is the id ``/v1/models`` lists and responses carry (requests may
    name any model). With ``log_path``, one JSON line
    ``{"request_id", "t_end", "tokens"}`` is appended and flushed per finished
    request, after its last byte was written: ``request_id`` is the request's
    ``X-Request-Id`` header (or null), ``t_end`` is ``time.time()`` in seconds.
    The file is opened when the server starts. ``source`` replaces the fixed
    timing (the simulator-timed server passes its engine's); ``timing.eos`` still
    sets the natural response length.
    """
    handlers = _Handlers(timing, model, log_path, source or FixedSource(timing))
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_get("/health", handlers.health)
    app.router.add_get("/metrics", handlers.metrics)
    app.router.add_get("/v1/models", handlers.models)
    app.router.add_post("/v1/completions", handlers.completions)
    app.router.add_post("/v1/chat/completions", handlers.chat)
    app.on_startup.append(handlers.open_log)
    app.on_cleanup.append(handlers.close_log)
    return app


def base_url(host: str, port: int) -> str:
    """``http://host:port``, with an IPv6 host in brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@asynccontextmanager
async def running_server(
    app: web.Application,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    shutdown_timeout: float = 1.0,
) -> AsyncIterator[str]:
    """Serve ``app`` on the running loop while the block runs; yields the base URL.

    ``port=0`` picks a free port (use a host with one address, such as
    127.0.0.1). On exit, requests still in flight get ``shutdown_timeout``
    seconds to finish before they are cancelled.
    """
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=BACKLOG)
        await site.start()
        yield base_url(host, int(runner.addresses[0][1]))
    finally:
        await runner.cleanup()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A fresh event loop: uvloop's where it is installed, asyncio's otherwise."""
    if uvloop is not None:
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


@contextmanager
def serve_in_thread(
    app: web.Application,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    shutdown_timeout: float = 1.0,
    start_timeout: float = 30.0,
) -> Iterator[str]:
    """Serve ``app`` from a daemon thread with its own event loop; yields the base URL.

    For in-process use from synchronous code (the demo, tests) while a client
    runs its own loop: ``with serve_in_thread(make_app(FixedTiming())) as url:``.
    A failure to start (port taken, log file not writable) is raised here.
    The server stops when the block exits.
    """
    started: Future[str] = Future()
    stop: list[Callable[[], object]] = []

    async def main() -> None:
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        stop.append(lambda: loop.call_soon_threadsafe(done.set))
        async with running_server(app, host, port, shutdown_timeout=shutdown_timeout) as url:
            started.set_result(url)
            await done.wait()

    def run() -> None:
        try:
            with asyncio.Runner(loop_factory=new_event_loop) as runner:
                runner.run(main())
        except BaseException as exc:  # handed to the thread that waits for the start
            if not started.done():
                started.set_exception(exc)

    thread = threading.Thread(target=run, name="burstlab-server", daemon=True)
    thread.start()
    url = started.result(timeout=start_timeout)
    try:
        yield url
    finally:
        if stop:
            with suppress(RuntimeError):  # the loop already closed
                stop[0]()
        thread.join(timeout=shutdown_timeout + 10)


def serve_forever(
    app: web.Application,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, then stop cleanly and return.

    ``on_ready`` is called with the base URL once the port is bound.
    """

    async def main() -> None:
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with suppress(NotImplementedError):  # Windows: Ctrl-C raises KeyboardInterrupt
                loop.add_signal_handler(sig, done.set)
        async with running_server(app, host, port) as url:
            if on_ready is not None:
                on_ready(url)
            await done.wait()

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main())
