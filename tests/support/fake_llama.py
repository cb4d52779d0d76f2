"""A small stand-in for llama.cpp's ``llama-server`` on 127.0.0.1, for fast tests.

It speaks the shapes bench reads from the real one: ``/v1/completions`` streamed
with one chunk per token, ``usage`` and ``timings`` (``prompt_ms``,
``predicted_ms``, ``prompt_n``, ``cache_n``, ``predicted_n``) in the final chunk;
``/tokenize`` over a byte vocabulary (id = byte + 3, ids 0-2 special, no
merges, like the tiny test GGUF); ``/metrics`` with ``llamacpp:requests_processing``
and ``llamacpp:requests_deferred``; ``/slots``. Requests hold one of ``slots``
slots; a request that finds none waits (deferred). Its times are its own
``perf_counter`` stamps, taken the way llama-server takes them: ``prompt_ms``
from the slot taking the request to the first token, ``predicted_ms`` from the
first token to the last.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson
from aiohttp import web

SPECIAL = 3  # BOS, EOS, UNK


@dataclass
class FakeLlama:
    """The server's knobs and what it saw."""

    slots: int = 2
    prompt_s_per_token: float = 0.0001
    itl_s: float = 0.002
    url: str = ""
    busy: int = 0
    deferred: int = 0
    prompts: list[int] = field(default_factory=list)
    ignore_eos: list[bool] = field(default_factory=list)
    #: ``/tokenize`` in vLLM's dialect (``prompt``, ``add_special_tokens``).
    vllm: bool = False


def _tokens(prompt: object) -> list[int]:
    if isinstance(prompt, list):
        return [int(t) for t in prompt]
    return [b + SPECIAL for b in str(prompt).encode()]


def _app(state: FakeLlama) -> web.Application:
    free = asyncio.Semaphore(state.slots)

    async def models(_req: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "tiny", "object": "model"}]})

    async def tokenize(req: web.Request) -> web.Response:
        body = await req.json()
        text, special = (
            ("prompt", "add_special_tokens") if state.vllm else ("content", "add_special")
        )
        if text not in body:
            return web.json_response({"error": {"message": f"no {text}"}}, status=400)
        ids = _tokens(body[text])
        if body.get(special):
            ids = [1, *ids]
        return web.json_response({"tokens": ids})

    async def metrics(_req: web.Request) -> web.Response:
        text = (
            "# HELP llamacpp:requests_processing Number of requests processing\n"
            "# TYPE llamacpp:requests_processing gauge\n"
            f"llamacpp:requests_processing {state.busy}\n"
            "# HELP llamacpp:requests_deferred Number of requests deferred\n"
            "# TYPE llamacpp:requests_deferred gauge\n"
            f"llamacpp:requests_deferred {state.deferred}\n"
        )
        return web.Response(text=text, content_type="text/plain")

    async def slots(_req: web.Request) -> web.Response:
        return web.json_response(
            [
                {
                    "id": i,
                    "n_ctx": 1024,
                    "is_processing": i < state.busy,
                    "n_prompt_tokens": 10,
                    "next_token": [{"n_decoded": 5}],
                }
                for i in range(state.slots)
            ]
        )

    async def completions(req: web.Request) -> web.StreamResponse:
        body = await req.json()
        prompt = _tokens(body["prompt"])
        n = int(body.get("n_predict", body.get("max_tokens", 16)))
        per_token = bool(body.get("timings_per_token"))
        state.ignore_eos.append(bool(body.get("ignore_eos")))
        state.prompts.append(len(prompt))
        state.deferred += 1
        async with free:
            state.deferred -= 1
            state.busy += 1
            try:
                t_start = time.perf_counter()
                await asyncio.sleep(state.prompt_s_per_token * len(prompt))
                resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                await resp.prepare(req)
                t_first = t_last = time.perf_counter()
                for i in range(n):
                    if i:
                        await asyncio.sleep(state.itl_s)
                    t_last = time.perf_counter()
                    chunk: dict[str, object] = {
                        "choices": [{"text": "a", "index": 0, "finish_reason": None}]
                    }
                    timings = {
                        "cache_n": 0,
                        "prompt_n": len(prompt),
                        "prompt_ms": (t_first - t_start) * 1e3,
                        "predicted_n": i + 1,
                        "predicted_ms": (t_last - t_first) * 1e3,
                    }
                    if per_token:
                        chunk["timings"] = timings
                    if i == n - 1:
                        chunk["choices"] = [{"text": "a", "index": 0, "finish_reason": "length"}]
                        chunk["usage"] = {
                            "prompt_tokens": len(prompt),
                            "completion_tokens": n,
                            "total_tokens": len(prompt) + n,
                        }
                        chunk["timings"] = timings
                    await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
                await resp.write(b"data: [DONE]\n\n")
                await resp.write_eof()
                return resp
            finally:
                state.busy -= 1

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/tokenize", tokenize)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/slots", slots)
    app.router.add_post("/v1/completions", completions)
    return app


@contextlib.contextmanager
def fake_llama(**knobs: float | bool) -> Iterator[FakeLlama]:
    """A :class:`FakeLlama` serving on 127.0.0.1 from a thread while in the block."""
    state = FakeLlama(**knobs)  # type: ignore[arg-type]
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
