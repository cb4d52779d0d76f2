"""HTTP/1.1 over raw sockets, for what a client library would not send: partial heads,
chunked bodies cut short, no Content-Type, connections held open."""

from __future__ import annotations

import select
import socket
import time

import orjson

#: Upper bound for "promptly" (a close, an answer): seconds, far above what any machine needs.
PROMPT_S = 15.0


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=PROMPT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def head(path: str, *lines: str, method: str = "POST") -> bytes:
    """A request's head: the request line, ``Host`` and ``lines``, then the blank line."""
    return "\r\n".join([f"{method} {path} HTTP/1.1", "Host: t", *lines, "", ""]).encode()


def post(body: bytes, *lines: str, path: str = "/v1/completions") -> bytes:
    """A whole POST with a ``Content-Length``; ``lines`` default to a JSON Content-Type."""
    lines = lines or ("Content-Type: application/json",)
    return head(path, *lines, f"Content-Length: {len(body)}") + body


class Reply:
    """One response read off a socket: status, headers (lower-case names), body."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def error(self) -> dict[str, object]:
        assert self.headers["content-type"].startswith("application/json")
        error: dict[str, object] = orjson.loads(self.body)["error"]
        return error


def read_head(sock: socket.socket) -> bytes:
    """Bytes up to the end of a reply's headers (and whatever came with them)."""
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        assert data, "closed before the headers ended"
        buf += data
    return bytes(buf)


def read_reply(sock: socket.socket, buf: bytearray | None = None) -> Reply:
    """Read one response with a ``Content-Length`` body (what is left over stays in ``buf``)."""
    buf = bytearray() if buf is None else buf
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        assert data, f"closed before a response; got {bytes(buf)!r}"
        buf += data
    end = buf.index(b"\r\n\r\n")
    status_line, *lines = buf[:end].decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines)}
    length = int(headers.get("content-length", "0"))
    while len(buf) < end + 4 + length:
        data = sock.recv(65536)
        assert data, "closed inside a response body"
        buf += data
    body = bytes(buf[end + 4 : end + 4 + length])
    del buf[: end + 4 + length]
    return Reply(int(status_line.split()[1]), headers, body)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) within ``seconds``; data is skipped."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([sock], [], [], left)
        if ready:
            try:
                if not sock.recv(65536):
                    return True
            except ConnectionResetError:
                return True
    return False
