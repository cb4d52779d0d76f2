"""The mock server against hostile request bodies, over raw sockets on 127.0.0.1: bodies
over the cap (with a Content-Length, chunked, behind ``Expect: 100-continue``) and a
Content-Type that is not JSON.

Each server runs in a daemon thread (``serve_in_thread``) with a 1 KiB body cap; bounds on
time are generous upper ones, so they hold on a busy machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import orjson
import pytest

from burstlab.server.app import MAX_BODY_BYTES, make_app
from burstlab.server.fixed import FixedTiming
from burstlab.server.hosting import serve_in_thread
from support.rawhttp import PROMPT_S, closed_within, connect, head, post, read_reply

CAP = 1024
FAST = FixedTiming(ttft=0.0, itl=0.0, eos=2)
COMPLETION = b'{"prompt": "a b", "max_tokens": 2}'


@contextmanager
def serving() -> Iterator[int]:
    """The port of a fast server with a body cap of ``CAP`` bytes."""
    with serve_in_thread(make_app(FAST, max_body=CAP)) as url:
        port = urlsplit(url).port
        assert port is not None
        yield port


# --- bodies over the cap ---------------------------------------------------------------------


def test_content_length_over_the_cap_gets_413_before_any_body_is_sent() -> None:
    """The head alone is answered: no body byte is ever sent, and the connection closes."""
    with serving() as port, connect(port) as sock:
        sock.sendall(
            head(
                "/v1/completions",
                "Content-Type: application/json",
                "Content-Length: 104857600",
                "X-Request-Id: big-1",
            )
        )
        reply = read_reply(sock)
        assert reply.status == 413
        assert reply.headers["connection"] == "close"
        assert reply.headers["x-request-id"] == "big-1"
        error = reply.error()
        assert error["code"] == 413
        assert error["type"] == "invalid_request_error"
        assert "Content-Length 104857600" in str(error["message"])
        assert f"limit of {CAP} bytes" in str(error["message"])
        assert closed_within(sock, PROMPT_S)


def test_chunked_body_past_the_cap_gets_413_and_the_rest_is_not_read() -> None:
    """Chunks that pass the cap get a 413 without the final chunk being sent."""
    chunk = b"200\r\n" + b" " * 0x200 + b"\r\n"
    with serving() as port, connect(port) as sock:
        sock.sendall(
            head(
                "/v1/chat/completions",
                "Content-Type: application/json",
                "Transfer-Encoding: chunked",
            )
        )
        sock.sendall(chunk * 3)  # 1,536 bytes: past the 1,024-byte cap; no 0-size last chunk
        reply = read_reply(sock)
        assert reply.status == 413
        assert reply.headers["connection"] == "close"
        assert f"limit of {CAP} bytes" in str(reply.error()["message"])
        assert closed_within(sock, PROMPT_S)


def test_a_chunked_body_under_the_cap_is_served() -> None:
    body = COMPLETION
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    with serving() as port, connect(port) as sock:
        sock.sendall(
            head("/v1/completions", "Content-Type: application/json", "Transfer-Encoding: chunked")
            + chunked
        )
        reply = read_reply(sock)
        assert reply.status == 200, reply.body
        assert orjson.loads(reply.body)["usage"]["completion_tokens"] == 2


def test_a_body_of_exactly_the_cap_is_served_and_one_more_byte_is_not() -> None:
    exact = COMPLETION + b" " * (CAP - len(COMPLETION))
    with serving() as port:
        with connect(port) as sock:
            sock.sendall(post(exact))
            assert read_reply(sock).status == 200
        with connect(port) as sock:
            sock.sendall(post(exact + b" "))
            assert read_reply(sock).status == 413


def test_expect_100_continue_is_refused_before_the_body_when_too_large() -> None:
    with serving() as port:
        with connect(port) as sock:
            sock.sendall(
                head(
                    "/v1/completions",
                    "Content-Type: application/json",
                    f"Content-Length: {CAP + 1}",
                    "Expect: 100-continue",
                )
            )
            reply = read_reply(sock)  # the final answer, with no 100 Continue first
            assert reply.status == 413
            assert closed_within(sock, PROMPT_S)
        with connect(port) as sock:
            sock.sendall(
                head(
                    "/v1/completions",
                    "Content-Type: application/json",
                    f"Content-Length: {len(COMPLETION)}",
                    "Expect: 100-continue",
                )
            )
            buf = bytearray()
            assert read_reply(sock, buf).status == 100
            sock.sendall(COMPLETION)
            assert read_reply(sock, buf).status == 200


def test_requests_within_the_limits_keep_their_connection() -> None:
    with serving() as port, connect(port) as sock:
        buf = bytearray()
        for _ in range(3):
            sock.sendall(post(COMPLETION))
            reply = read_reply(sock, buf)
            assert reply.status == 200
            assert reply.headers.get("connection", "keep-alive") != "close"


def test_make_app_refuses_a_cap_under_one_byte() -> None:
    with pytest.raises(ValueError, match="max_body"):
        make_app(FAST, max_body=0)
    assert MAX_BODY_BYTES == 16 << 20


# --- Content-Type ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/octet-stream",
        "multipart/form-data; boundary=x",
        "application/jsonx",
    ],
)
@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions"])
def test_a_content_type_that_is_not_json_gets_415_naming_it(kind: str, path: str) -> None:
    with serving() as port, connect(port) as sock:
        sock.sendall(post(COMPLETION, f"Content-Type: {kind}", "X-Request-Id: ct-1", path=path))
        reply = read_reply(sock)
        assert reply.status == 415
        assert reply.headers["x-request-id"] == "ct-1"
        error = reply.error()
        assert error["code"] == 415
        assert repr(kind) in str(error["message"])
        assert "application/json" in str(error["message"])


@pytest.mark.parametrize(
    "lines",
    [
        ("Content-Type: application/json",),
        ("Content-Type: application/json; charset=utf-8",),
        ("Content-Type: Application/JSON",),
        ("Content-Type: application/vnd.example+json",),
        ("X-No-Content-Type: 1",),  # none at all: taken as JSON, as most servers do
    ],
)
def test_json_content_types_and_none_are_served(lines: tuple[str, ...]) -> None:
    with serving() as port, connect(port) as sock:
        sock.sendall(post(COMPLETION, *lines))
        assert read_reply(sock).status == 200
