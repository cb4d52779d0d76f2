"""Small stand-ins for engines' native generate APIs on 127.0.0.1, for bench's tests.

One aiohttp app speaks one protocol as the real server does (the shapes are
described, with the versions matched, in :mod:`burstlab.bench.native`):

- ``tgi``: ``POST /generate_stream`` (SSE ``data:`` without a space, as axum
  writes it; one event per token, the last with ``generated_text`` and
  ``details``) and ``POST /generate``; a temperature of 0 or less is refused with
  422, as TGI's router does; no ``ignore_eos``: a model that reaches its
  end-of-sequence token (``eos_after``) stops there.
- ``sglang``: ``POST /generate`` with ``text`` or ``input_ids``; SSE events with
  the cumulative text and ``meta_info`` counts, every ``interval`` tokens (SGLang's
  ``--stream-interval``), then ``data: [DONE]``.
- ``lightllm``: ``POST /generate_stream`` (one event per token with running
  counts, ``finished`` on the last) and ``POST /generate``.
- ``vllm``: ``POST /generate`` of the legacy API server: ``{"text": [prompt +
  output so far]}`` per step, each ended by ``delimiter`` (``\\n``; ``\\0`` in old
  releases); unknown body fields are a 500, as ``SamplingParams(**fields)`` raises.

A request's tokens are words ``" w0"``, ``" w1"``...; a text prompt has one token
per whitespace-separated word, a token-id prompt one per id. ``faults`` maps a
request's index (the number after the last ``-`` of its ``X-Request-Id``) to a
misbehaviour: ``http_400``, ``http_503``, ``truncate`` (the body ends cleanly
after two tokens, with no terminal event; for vLLM in the middle of a line),
``drop`` (the connection is cut after two tokens), ``error_event`` (the
protocol's error event after one token).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

#: SamplingParams fields the vLLM stand-in accepts (a subset of the real one's).
VLLM_FIELDS = frozenset(
    {"max_tokens", "min_tokens", "ignore_eos", "temperature", "top_p", "top_k", "n", "seed"}
)


@dataclass
class NativeServer:
    """A stand-in's knobs and what it saw."""

    protocol: str
    itl_s: float = 0.001
    #: The model's end-of-sequence token comes after this many tokens (None: never);
    #: a request that neither ignores EOS nor asks a minimum length stops there.
    eos_after: int | None = None
    #: SGLang: tokens per event.
    interval: int = 1
    #: vLLM: what ends each JSON object.
    delimiter: bytes = b"\n"
    faults: dict[int, str] = field(default_factory=dict)
    url: str = ""
    bodies: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


def _index(request: web.Request) -> int:
    key = request.headers.get("X-Request-Id", "")
    tail = key.rpartition("-")[2]
    return int(tail) if tail.isdigit() else -1


def _prompt_tokens(prompt: object) -> int:
    if isinstance(prompt, list):
        return len(prompt)
    return len(str(prompt).split())


def _words(n: int) -> list[str]:
    return [f" w{k}" for k in range(n)]


def _length(
    state: NativeServer, max_new: int, *, ignore_eos: bool, min_new: int
) -> tuple[int, bool]:
    """Tokens generated and whether the end-of-sequence token stopped the request."""
    if state.eos_after is not None and not ignore_eos and state.eos_after < max_new:
        stop = max(state.eos_after, min_new)
        if stop < max_new:
            return stop, True
    return max_new, False


def _sse(obj: object, *, space: bool = True) -> bytes:
    return (b"data: " if space else b"data:") + orjson.dumps(obj) + b"\n\n"


async def _open(request: web.Request, content_type: str | None) -> web.StreamResponse:
    resp = web.StreamResponse()
    if content_type is not None:
        resp.content_type = content_type
    await resp.prepare(request)
    return resp


async def _drop(request: web.Request) -> None:
    assert request.transport is not None
    request.transport.close()


def _app(state: NativeServer) -> web.Application:
    async def record(request: web.Request) -> tuple[dict[str, Any], str]:
        body = await request.json()
        state.bodies.append(dict(body))
        state.paths.append(request.path)
        return body, state.faults.get(_index(request), "")

    def http_fault(fault: str) -> web.Response | None:
        if fault == "http_400":
            return web.json_response({"error": "bad request"}, status=400)
        if fault == "http_503":
            return web.json_response({"error": "overloaded"}, status=503)
        return None

    async def tgi(request: web.Request) -> web.StreamResponse:
        body, fault = await record(request)
        if (failure := http_fault(fault)) is not None:
            return failure
        params = body.get("parameters") or {}
        temperature = params.get("temperature")
        if temperature is not None and temperature <= 0:
            return web.json_response(
                {
                    "error": "Input validation error: `temperature` must be strictly positive",
                    "error_type": "validation",
                },
                status=422,
            )
        n, eos = _length(state, int(params.get("max_new_tokens", 20)), ignore_eos=False, min_new=0)
        words = _words(n)
        if eos:
            words[-1] = "</s>"
        details = {
            "finish_reason": "eos_token" if eos else "length",
            "generated_tokens": n,
            "seed": None,
        }
        text = "".join(w for w in words if w != "</s>")
        if request.path == "/generate":
            out: dict[str, Any] = {"generated_text": text}
            if params.get("details"):
                out["details"] = {**details, "prefill": [], "tokens": []}
            return web.json_response(out)
        resp = await _open(request, "text/event-stream")
        for k, word in enumerate(words):
            if k:
                await asyncio.sleep(state.itl_s)
            if k == 2 and fault == "truncate":
                await resp.write_eof()
                return resp
            if k == 2 and fault == "drop":
                await _drop(request)
                return resp
            if k == 1 and fault == "error_event":
                err = {"error": "Request failed during generation", "error_type": "generation"}
                await resp.write(_sse(err, space=False))
                await resp.write_eof()
                return resp
            last = k == n - 1
            event = {
                "index": k,
                "token": {"id": 100 + k, "text": word, "logprob": -0.5, "special": word == "</s>"},
                "generated_text": text if last else None,
                "details": details if last and params.get("details") else None,
            }
            await resp.write(_sse(event, space=False))
        await resp.write_eof()
        return resp

    async def sglang(request: web.Request) -> web.StreamResponse:
        body, fault = await record(request)
        if (failure := http_fault(fault)) is not None:
            return failure
        sampling = body.get("sampling_params") or {}
        prompt = body["input_ids"] if "input_ids" in body else body["text"]
        max_new = int(sampling.get("max_new_tokens", 128))
        n, eos = _length(
            state,
            max_new,
            ignore_eos=bool(sampling.get("ignore_eos")),
            min_new=int(sampling.get("min_new_tokens", 0)),
        )
        words = _words(n)
        prompt_tokens = _prompt_tokens(prompt)

        def out(k: int) -> dict[str, Any]:
            finish = None
            if k == n:
                finish = {"type": "stop", "matched": 2} if eos else {"type": "length", "length": n}
            return {
                "text": "".join(words[:k]),
                "output_ids": list(range(100, 100 + k)),
                "meta_info": {
                    "id": "r",
                    "finish_reason": finish,
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": k,
                    "cached_tokens": 0,
                },
            }

        if not body.get("stream"):
            return web.json_response(out(n))
        resp = await _open(request, "text/event-stream")
        k = 0
        while k < n:
            k = min(k + state.interval, n)
            await asyncio.sleep(state.itl_s * state.interval)
            if k > 2 and fault == "truncate":
                await resp.write_eof()
                return resp
            if k > 2 and fault == "drop":
                await _drop(request)
                return resp
            if k > 1 and fault == "error_event":
                await resp.write(_sse({"error": {"message": "the scheduler failed"}}))
                await resp.write(b"data: [DONE]\n\n")
                await resp.write_eof()
                return resp
            await resp.write(_sse(out(k)))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def lightllm(request: web.Request) -> web.StreamResponse:
        body, fault = await record(request)
        if (failure := http_fault(fault)) is not None:
            return failure
        params = body.get("parameters") or {}
        prompt_tokens = _prompt_tokens(body["inputs"])
        n, eos = _length(
            state,
            int(params.get("max_new_tokens", 16)),
            ignore_eos=bool(params.get("ignore_eos")),
            min_new=int(params.get("min_new_tokens", 1)),
        )
        words = _words(n)
        reason = "stop" if eos else "length"
        if request.path == "/generate":
            return web.json_response(
                {
                    "generated_text": ["".join(words)],
                    "count_output_tokens": n,
                    "finish_reason": reason,
                    "prompt_tokens": prompt_tokens,
                }
            )
        resp = await _open(request, "text/event-stream")
        for k, word in enumerate(words):
            if k:
                await asyncio.sleep(state.itl_s)
            if k == 2 and fault == "truncate":
                await resp.write_eof()
                return resp
            if k == 2 and fault == "drop":
                await _drop(request)
                return resp
            if k == 1 and fault == "error_event":
                await resp.write(_sse({"error": "generation failed"}, space=False))
                await resp.write_eof()
                return resp
            last = k == n - 1
            event = {
                "token": {
                    "id": 100 + k,
                    "text": word,
                    "logprob": -0.5,
                    "special": False,
                    "count_output_tokens": k + 1,
                    "prompt_tokens": prompt_tokens,
                },
                "generated_text": None,
                "finished": last,
                "finish_reason": reason if last else None,
                "details": None,
            }
            await resp.write(_sse(event, space=False))
        await resp.write_eof()
        return resp

    async def vllm(request: web.Request) -> web.StreamResponse:
        body, fault = await record(request)
        if (failure := http_fault(fault)) is not None:
            return failure
        prompt = body.pop("prompt")
        stream = body.pop("stream", False)
        unknown = set(body) - VLLM_FIELDS
        if unknown:
            return web.Response(status=500, text=f"TypeError: unexpected {sorted(unknown)}")
        n, _ = _length(
            state,
            int(body.get("max_tokens", 16)),
            ignore_eos=bool(body.get("ignore_eos")),
            min_new=int(body.get("min_tokens", 0)),
        )
        words = _words(n)
        if not stream:
            return web.json_response({"text": [prompt + "".join(words)]})
        resp = await _open(request, None)
        for k in range(1, n + 1):
            await asyncio.sleep(state.itl_s)
            line = orjson.dumps({"text": [prompt + "".join(words[:k])]})
            if k == 3 and fault == "truncate":
                await resp.write(line[: len(line) // 2])
                await resp.write_eof()
                return resp
            if k == 3 and fault == "drop":
                await _drop(request)
                return resp
            await resp.write(line + state.delimiter)
        await resp.write_eof()
        return resp

    app = web.Application()
    routes = {
        "tgi": [("/generate_stream", tgi), ("/generate", tgi)],
        "sglang": [("/generate", sglang)],
        "lightllm": [("/generate_stream", lightllm), ("/generate", lightllm)],
        "vllm": [("/generate", vllm)],
    }[state.protocol]
    for path, handler in routes:
        app.router.add_post(path, handler)
    return app


@contextlib.contextmanager
def native_server(protocol: str, **knobs: Any) -> Iterator[NativeServer]:
    """A :class:`NativeServer` of ``protocol`` serving on 127.0.0.1 from a thread
    while in the block."""
    state = NativeServer(protocol, **knobs)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    runner: list[web.AppRunner] = []

    async def start() -> None:
        app_runner = web.AppRunner(_app(state), access_log=None)
        await app_runner.setup()
        site = web.TCPSite(app_runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        state.url = f"http://127.0.0.1:{port}"
        runner.append(app_runner)

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    started.wait(30)
    try:
        yield state
    finally:
        asyncio.run_coroutine_threadsafe(runner[0].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
