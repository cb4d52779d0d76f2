"""``burstlab serve`` against hostile clients, as a real process on 127.0.0.1: memory stays
flat across oversized bodies, and ``--max-body``, ``--header-timeout`` and
``--max-connections`` reach the server.

The server's memory is its resident set (``VmRSS`` in ``/proc/PID/status``); its bound is
a multiple of the body cap, far under what keeping even a few bodies would take, so it
holds on a busy machine. Bounds on time are lower bounds or generous upper ones.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import select
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from burstlab.cli.serve_cmd import serve
from burstlab.server.app import MAX_BODY_BYTES
from burstlab.server.hosting import HEADER_TIMEOUT_S, MAX_CONNECTIONS
from support.cli import BIN
from support.rawhttp import PROMPT_S, closed_within, connect, head, post, read_head, read_reply

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads the server's RSS from /proc"
)

READY = re.compile(r"serving \S+ at (http://127\.0\.0\.1:\d+) \(")
MiB = 1 << 20
#: Each oversized body: the size of the issue's report, over six times the 16 MiB cap.
OVERSIZED = 100 * MiB
#: What the server may grow by across all of them: four caps. Keeping one body of each
#: kind would pass it; keeping every one would take 10 GB.
GROWTH_BOUND = 4 * MAX_BODY_BYTES


@contextmanager
def serving(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``burstlab serve ARGS --port 0`` as a process, and its base URL once it is ready."""
    proc = subprocess.Popen(
        [str(BIN), "serve", *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready else ""
        match = READY.match(line)
        if match is None:
            proc.kill()
            pytest.fail(f"no ready line; got {line!r}; stderr: {proc.communicate()[1]}")
        yield proc, match.group(1)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def rss(pid: int) -> int:
    """Resident set of process ``pid``, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def blocks(total: int) -> AsyncIterator[bytes]:
    block = b" " * MiB
    for _ in range(total // MiB):
        yield block


def test_oversized_bodies_leave_the_server_memory_flat() -> None:
    """50 bodies of 100 MiB with a Content-Length and 50 chunked ones, one after another:
    each is refused at the cap, and the server's RSS does not grow with their number."""
    with serving("--fixed", "ttft=0,itl=0") as (proc, url):
        seen: Counter[tuple[str, int | str]] = Counter()
        growth: list[int] = []

        async def main() -> int:
            async with aiohttp.ClientSession() as session:
                for _ in range(5):  # warm: the server's first requests allocate for good
                    small = {"prompt": "a", "max_tokens": 2}
                    async with session.post(url + "/v1/completions", json=small) as resp:
                        assert resp.status == 200
                base = rss(proc.pid)
                for kind in ("length", "chunked"):
                    for _ in range(50):
                        headers = {"Content-Type": "application/json"}
                        if kind == "length":
                            headers["Content-Length"] = str(OVERSIZED)
                        try:
                            async with session.post(
                                url + "/v1/completions", data=blocks(OVERSIZED), headers=headers
                            ) as resp:
                                message = (await resp.json())["error"]["message"]
                                seen[kind, resp.status] += 1
                                said = "Content-Length" if kind == "length" else "the body is"
                                assert said in message, message
                        except aiohttp.ClientError:  # reset while still sending: it was closed
                            seen[kind, "closed"] += 1
                        growth.append(rss(proc.pid) - base)
                        assert growth[-1] < GROWTH_BOUND, (seen, growth)
                return base

        base = asyncio.run(main())
        print(  # shown with pytest -s: the figures of the report
            f"RSS {base / MiB:.1f} MiB before, {(base + growth[-1]) / MiB:.1f} MiB after "
            f"100 oversized bodies (peak growth {max(growth) / MiB:.1f} MiB); {dict(seen)}"
        )
        assert set(seen) <= {(k, v) for k in ("length", "chunked") for v in (413, "closed")}
        assert sum(seen.values()) == 100
        assert seen["length", 413] + seen["chunked", 413] > 0


def test_the_limit_options_reach_the_server() -> None:
    args = ("--fixed", "ttft=60,itl=1", "--max-body", "1000", "--header-timeout", "0.5")
    with serving(*args, "--max-connections", "2") as (_, url):
        port = urlsplit(url).port
        assert port is not None
        with connect(port) as sock:  # --max-body
            sock.sendall(post(b" " * 1001))
            reply = read_reply(sock)
            assert reply.status == 413
            assert "limit of 1000 bytes" in str(reply.error()["message"])
        with connect(port) as sock:  # --header-timeout
            start = time.monotonic()
            sock.sendall(b"GET /health HTTP/1.1\r\n")
            assert closed_within(sock, 0.5 + PROMPT_S)
            assert time.monotonic() - start >= 0.45
        with ExitStack() as stack:  # --max-connections: two streams for a minute, then one more
            stream = json.dumps({"prompt": "a", "max_tokens": 3, "stream": True}).encode()
            for _ in range(2):
                sock = stack.enter_context(connect(port))
                sock.sendall(post(stream))
                assert read_head(sock).startswith(b"HTTP/1.1 200")
            with connect(port) as sock:
                sock.sendall(head("/health", method="GET"))
                reply = read_reply(sock)
                assert reply.status == 503
                assert "at most 2" in str(reply.error()["message"])


def test_the_defaults_are_the_servers() -> None:
    defaults = {name: p.default for name, p in inspect.signature(serve).parameters.items()}
    assert defaults["max_body"] == MAX_BODY_BYTES == 16 * MiB
    assert defaults["max_connections"] == MAX_CONNECTIONS
    assert defaults["header_timeout"] == HEADER_TIMEOUT_S
