"""The mock server against clients that hold connections, over raw sockets on 127.0.0.1:
slowloris heads (the header timeout) and too many connections (the connection cap).

Each server runs in a daemon thread (``serve_in_thread``) with small limits. Bounds on time
are lower bounds (a timer never fires early) or generous upper ones, so they hold on a busy
machine.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from aiohttp import web

from burstlab.server.app import make_app
from burstlab.server.fixed import FixedTiming
from burstlab.server.hosting import HEADER_TIMEOUT_S, MAX_CONNECTIONS, Limits, serve_in_thread
from support.rawhttp import PROMPT_S, closed_within, connect, head, post, read_head, read_reply

FAST = FixedTiming(ttft=0.0, itl=0.0, eos=2)
#: A server busy for a minute with each streaming request (headers first, then tokens).
SLOW = FixedTiming(ttft=60.0, itl=1.0)
COMPLETION = b'{"prompt": "a b", "max_tokens": 2}'


@contextmanager
def serving(app: web.Application | None = None, **limits: Any) -> Iterator[int]:
    """The port of a server of ``app`` (default: the fast one) held to ``limits``."""
    with serve_in_thread(app or make_app(FAST), limits=Limits(**limits)) as url:
        port = urlsplit(url).port
        assert port is not None
        yield port


# --- header timeout (slowloris) --------------------------------------------------------------


def test_slowloris_headers_are_cut_off_after_the_header_timeout() -> None:
    """One header byte every 50 ms, never finishing: closed once 0.5 s have passed."""
    with serving(header_timeout_s=0.5, max_connections=8) as port, connect(port) as sock:
        start = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n")
        trickle = iter(b"X-Slow: " + b"a" * 100_000)
        closed = False
        while not closed and time.monotonic() - start < 0.5 + PROMPT_S:
            try:
                sock.send(bytes([next(trickle)]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
            else:
                closed = closed_within(sock, 0.05)
        elapsed = time.monotonic() - start
        assert closed, "the server kept a slowloris connection"
        assert elapsed >= 0.45


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout() -> None:
    with serving(header_timeout_s=0.5) as port, connect(port) as sock:
        start = time.monotonic()
        assert closed_within(sock, 0.5 + PROMPT_S)
        assert time.monotonic() - start >= 0.45


def test_an_idle_keep_alive_connection_outlives_the_header_timeout() -> None:
    """The header timer runs from a request's first byte, not from the last response."""
    with serving(header_timeout_s=0.5) as port, connect(port) as sock:
        buf = bytearray()
        sock.sendall(post(COMPLETION))
        assert read_reply(sock, buf).status == 200
        time.sleep(1.5)  # three header timeouts, idle
        sock.sendall(post(COMPLETION))
        assert read_reply(sock, buf).status == 200


def test_a_slow_body_is_not_cut_by_the_header_timeout() -> None:
    with serving(header_timeout_s=0.5) as port, connect(port) as sock:
        sock.sendall(
            head(
                "/v1/completions",
                "Content-Type: application/json",
                f"Content-Length: {len(COMPLETION)}",
            )
        )
        for part in (COMPLETION[:10], COMPLETION[10:20], COMPLETION[20:]):
            time.sleep(0.4)  # 1.2 s for the body in all
            sock.sendall(part)
        assert read_reply(sock).status == 200


# --- connection cap --------------------------------------------------------------------------


def test_past_the_cap_the_oldest_idle_connection_makes_room() -> None:
    with serving(max_connections=3, header_timeout_s=60) as port, ExitStack() as stack:
        socks = [stack.enter_context(connect(port)) for _ in range(3)]
        for sock in socks:  # each served once, then idle: oldest first
            sock.sendall(head("/health", method="GET"))
            assert read_reply(sock).status == 200
        newcomer = stack.enter_context(connect(port))
        newcomer.sendall(head("/health", method="GET"))
        assert read_reply(newcomer).status == 200
        assert closed_within(socks[0], PROMPT_S)
        for sock in socks[1:]:  # the others were kept
            sock.sendall(head("/health", method="GET"))
            assert read_reply(sock).status == 200


def test_past_the_cap_with_every_connection_serving_the_newcomer_gets_503() -> None:
    stream = orjson.dumps(
        {"messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 5}
    )
    app = make_app(SLOW)
    with serving(app, max_connections=3, header_timeout_s=60) as port, ExitStack() as stack:
        busy = [stack.enter_context(connect(port)) for _ in range(3)]
        for sock in busy:  # each streaming for a minute: its head arrives, the tokens do not
            sock.sendall(post(stream, path="/v1/chat/completions"))
            assert read_head(sock).startswith(b"HTTP/1.1 200")
        with connect(port) as refused:
            refused.sendall(head("/health", method="GET"))
            reply = read_reply(refused)
            assert reply.status == 503
            assert reply.headers["connection"] == "close"
            assert reply.headers["retry-after"] == "1"
            error = reply.error()
            assert error["code"] == 503
            assert "at most 3" in str(error["message"])
            assert closed_within(refused, PROMPT_S)
        busy[0].close()  # one leaves: there is room again
        deadline = time.monotonic() + PROMPT_S
        while True:
            with connect(port) as sock:
                sock.sendall(head("/health", method="GET"))
                if read_reply(sock).status == 200:
                    break
            assert time.monotonic() < deadline, "no room after a connection closed"
            time.sleep(0.05)


def test_limits_are_checked() -> None:
    assert (Limits().max_connections, Limits().header_timeout_s) == (
        MAX_CONNECTIONS,
        HEADER_TIMEOUT_S,
    )
    with pytest.raises(ValueError, match="max_connections"):
        Limits(max_connections=0)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="header_timeout_s"):
            Limits(header_timeout_s=bad)
    with pytest.raises(ValueError, match="keepalive_timeout_s"):
        Limits(keepalive_timeout_s=0.0)
