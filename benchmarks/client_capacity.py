"""Client capacity: the highest constant request rate burstlab's client holds on time.

(Full description below, filled in once the pieces work.)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SERVER_CPU = 1  # the server's core; the one-process client gets CPU 0
CLIENT_CPU = 0


# --- 1. the server: raw asyncio.Protocol on uvloop, pre-built SSE bytes --------------------------

_MAX_HEAD = 64 << 10
_MAX_BODY = 16 << 20
_CACHE_MAX = 4096
_WORD = " tok"


def _chunk(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk holding one SSE event."""
    event = b"data: " + payload + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


def _sse_response(api: str, model: str, tokens: int, prompt_tokens: int) -> bytes:
    """A complete chunked HTTP response: ``tokens`` one-token chunks (the last with
    finish_reason "length"), a usage chunk with ``choices: []``, then ``[DONE]``."""
    dumps = json.dumps
    parts = [
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    ]
    if api == "chat":
        head = {"id": "chatcmpl-cap", "object": "chat.completion.chunk", "created": 0}
        head["model"] = model
        role = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        parts.append(_chunk(dumps({**head, "choices": [role]}).encode()))
        for k in range(tokens):
            reason = "length" if k == tokens - 1 else None
            choice = {"index": 0, "delta": {"content": _WORD}, "finish_reason": reason}
            parts.append(_chunk(dumps({**head, "choices": [choice]}).encode()))
    else:
        head = {"id": "cmpl-cap", "object": "text_completion", "created": 0, "model": model}
        for k in range(tokens):
            reason = "length" if k == tokens - 1 else None
            choice = {"index": 0, "text": _WORD, "logprobs": None, "finish_reason": reason}
            parts.append(_chunk(dumps({**head, "choices": [choice]}).encode()))
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": tokens,
        "total_tokens": prompt_tokens + tokens,
    }
    parts.append(_chunk(dumps({**head, "choices": [], "usage": usage}).encode()))
    parts.append(_chunk(b"[DONE]"))
    parts.append(b"0\r\n\r\n")
    return b"".join(parts)


def _json_response(status: str, obj: object) -> bytes:
    body = json.dumps(obj).encode()
    return b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        status.encode(),
        len(body),
        body,
    )


def _whole_response(api: str, model: str, tokens: int, prompt_tokens: int) -> bytes:
    """The non-streaming reply (``"stream": false``), for completeness."""
    text = _WORD * tokens
    if api == "chat":
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text}}
    else:
        choice = {"index": 0, "text": text, "logprobs": None}
    choice["finish_reason"] = "length"
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": tokens}
    usage["total_tokens"] = prompt_tokens + tokens
    obj = {"id": "cap", "object": "text_completion", "created": 0, "model": model}
    return _json_response("200 OK", {**obj, "choices": [choice], "usage": usage})


def _prompt_tokens(api: str, body: dict[str, Any]) -> int:
    """Cheap prompt size: a token-id list's length, or whitespace-separated words."""
    if api == "chat":
        messages = body.get("messages") or []
        return sum(len(str(m.get("content", "")).split()) for m in messages if isinstance(m, dict))
    prompt = body.get("prompt", "")
    if isinstance(prompt, list):
        return len(prompt)
    return len(str(prompt).split())


class _ServerState:
    """What all connections share: the timing and a cache of pre-built replies."""

    def __init__(self, ttft_s: float, default_tokens: int) -> None:
        self.ttft_s = ttft_s
        self.default_tokens = default_tokens
        self.cache: dict[tuple[str, str, int, int, bool], bytes] = {}
        self.requests = 0
        self.models = _json_response(
            "200 OK", {"object": "list", "data": [{"id": "m", "object": "model"}]}
        )

    def reply(self, api: str, raw: bytes) -> bytes:
        try:
            body = json.loads(raw)
        except ValueError:
            return _json_response("400 Bad Request", {"error": {"message": "bad JSON"}})
        if not isinstance(body, dict):
            return _json_response("400 Bad Request", {"error": {"message": "not an object"}})
        tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        tokens = min(int(tokens), 4096) if tokens else self.default_tokens
        model = str(body.get("model") or "m")[:200]
        stream = bool(body.get("stream", False))
        key = (api, model, tokens, _prompt_tokens(api, body), stream)
        out = self.cache.get(key)
        if out is None:
            build = _sse_response if stream else _whole_response
            out = build(api, model, tokens, key[3])
            if len(self.cache) >= _CACHE_MAX:
                self.cache.clear()
            self.cache[key] = out
        self.requests += 1
        return out


_ROUTES = {b"/v1/completions": "completions", b"/v1/chat/completions": "chat"}


class _Connection(asyncio.Protocol):
    """One keep-alive connection: parses requests (pipelined or split across reads)
    and answers them in order, each after the fixed TTFT, in one ``write``."""

    def __init__(self, state: _ServerState) -> None:
        self.state = state
        self.buf = bytearray()
        self.queue: collections.deque[list[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while self.transport is not None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > _MAX_HEAD:
                    self._fail(b"431 Request Header Fields Too Large")
                return
            lines = bytes(buf[:end]).split(b"\r\n")
            try:
                method, path, _version = lines[0].split(b" ", 2)
            except ValueError:
                self._fail(b"400 Bad Request")
                return
            length, close = 0, False
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection":
                    close = value.strip().lower() == b"close"
                elif name == b"transfer-encoding":
                    self._fail(b"501 Not Implemented")
                    return
            if length > _MAX_BODY:
                self._fail(b"413 Content Too Large")
                return
            start = end + 4
            if len(buf) < start + length:
                return  # the rest of the body is still on its way
            body = bytes(buf[start : start + length])
            del buf[: start + length]
            self._handle(method, path.partition(b"?")[0], body, close)

    def _handle(self, method: bytes, path: bytes, body: bytes, close: bool) -> None:
        api = _ROUTES.get(path)
        if method == b"POST" and api is not None:
            entry = [False, self.state.reply(api, body), close]
            self.queue.append(entry)
            self.loop.call_later(self.state.ttft_s, self._ready, entry)
            return
        if method == b"GET" and path == b"/v1/models":
            out = self.state.models
        elif method == b"GET" and path == b"/health":
            out = _json_response("200 OK", {"status": "ok"})
        else:
            out = _json_response("404 Not Found", {"error": {"message": "no such route"}})
        entry = [False, out, close]
        self.queue.append(entry)
        self._ready(entry)

    def _ready(self, entry: list[Any]) -> None:
        entry[0] = True
        queue = self.queue
        while queue and queue[0][0] and self.transport is not None:
            _, out, close = queue.popleft()
            self.transport.write(out)
            if close:
                self.transport.close()

    def _fail(self, status: bytes) -> None:
        if self.transport is not None:
            self.transport.write(b"HTTP/1.1 %s\r\nContent-Length: 0\r\n\r\n" % status)
            self.transport.close()


def serve(port: int, ttft_s: float, tokens: int, cpu: int | None) -> None:
    """Serve on 127.0.0.1:``port`` until SIGTERM/SIGINT; print the port, then at the
    end the requests answered and this process's CPU seconds."""
    import uvloop

    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    state = _ServerState(ttft_s, tokens)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _Connection(state), "127.0.0.1", port, backlog=4096, reuse_address=True
        )
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        bound = server.sockets[0].getsockname()[1]
        print(f"listening {bound}", flush=True)
        async with server:
            await stop.wait()

    uvloop.run(main())
    print(json.dumps({"requests": state.requests, "cpu_s": time.process_time()}), flush=True)


class Server:
    """The capacity server in its own process (this script with ``--serve``)."""

    def __init__(self, ttft_s: float, tokens: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--ttft-ms", str(ttft_s * 1e3),
             "--tokens", str(tokens), "--cpu", str(SERVER_CPU)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("listening "):
            self.proc.kill()
            raise SystemExit(f"the capacity server did not start: {line!r}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        with contextlib.suppress(ValueError, IndexError):
            result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
            return result
        return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--ttft-ms", type=float, default=1.0)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.port, args.ttft_ms / 1e3, args.tokens, args.cpu)
        return
    srv = Server(args.ttft_ms / 1e3, args.tokens)
    print(srv.url)
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.1)
        print(s.recv(65536))
    print(srv.stop())


if __name__ == "__main__":
    main()
