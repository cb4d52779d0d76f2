"""Running a server app: in a thread of this process (tests, the demo) or until a signal (the CLI).

The event loop is :mod:`burstlab.core.loop`'s, the one choice for all of burstlab.
Every connection is held to :class:`Limits`: how many may be open, how long a
client may take to send a request's headers, how long an idle one is kept.
"""

from __future__ import annotations

import asyncio
import math
import signal
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Future
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from typing import Any, cast

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from burstlab.core import loop as event_loop

if sys.platform != "win32":
    import resource

#: Listen backlog: hundreds of clients connect at once when a burst starts.
BACKLOG = 4096

#: Open connections at most, by default: above the 2,000 that a burst of long streams
#: from an open-loop client (no concurrency cap by default) can hold.
MAX_CONNECTIONS = 4096

#: Seconds a client has, by default, to send the headers of a request, counted from
#: the connection's opening or from the first byte of a later request on it.
HEADER_TIMEOUT_S = 10.0

#: Seconds an idle keep-alive connection is kept: longer than clients keep theirs
#: (aiohttp 15 s, httpx 5 s), so that a client never reuses one the server is closing.
KEEPALIVE_TIMEOUT_S = 75.0


@dataclass(frozen=True, slots=True)
class Limits:
    """What clients may hold of a server.

    ``max_connections``: open connections at most. When one more arrives, the
    oldest connection that is not serving a request (idle, or still sending
    headers) is closed to make room; when every one is serving, the newcomer
    gets a 503 and is closed at once. ``header_timeout_s``: a connection whose
    request headers are not complete this long after it opened, or after the
    first byte of a later request, is closed (slowloris). ``keepalive_timeout_s``:
    an idle connection is closed after this long.
    """

    max_connections: int = MAX_CONNECTIONS
    header_timeout_s: float = HEADER_TIMEOUT_S
    keepalive_timeout_s: float = KEEPALIVE_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {self.max_connections}")
        for name in ("header_timeout_s", "keepalive_timeout_s"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number of seconds, got {value}")


def fd_room(want: int) -> int:
    """Raise this process's soft limit on open files towards ``want`` (as far as the
    hard limit allows); returns the soft limit now in force."""
    if sys.platform == "win32":  # pragma: no cover - no RLIMIT_NOFILE
        return want
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        with suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return want if soft == resource.RLIM_INFINITY else soft


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
    limits: Limits = Limits(),
) -> AsyncIterator[str]:
    """Serve ``app`` on the running loop while the block runs; yields the base URL.

    ``port=0`` picks a free port (use a host with one address, such as
    127.0.0.1). On exit, requests still in flight get ``shutdown_timeout``
    seconds to finish before they are cancelled. Connections are held to ``limits``.
    """
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    listening: asyncio.AbstractServer | None = None
    try:
        manager = runner.server
        assert manager is not None  # set up
        guard = _Guard(limits)
        manager.request_handler = guard.wrap(manager.request_handler)

        def connection() -> _Connection:
            return _Connection(manager, guard)

        loop = asyncio.get_running_loop()
        listening = await loop.create_server(connection, host, port, backlog=BACKLOG)
        yield base_url(host, int(listening.sockets[0].getsockname()[1]))
    finally:
        if listening is not None:
            listening.close()  # no new connections; the runner closes the open ones
        await runner.cleanup()


_Handler = Callable[[Any], Awaitable[web.StreamResponse]]

_HEADERS, _BUSY, _IDLE, _GONE, _REFUSED = range(5)


class _Guard:
    """The connections of one listening socket: those open, and those not serving a
    request (the ones to close first), oldest first."""

    __slots__ = ("evicted", "limits", "open", "refused", "timed_out", "waiting")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.open: set[_Connection] = set()
        self.waiting: dict[_Connection, None] = {}  # insertion order: oldest first
        self.refused = 0
        self.evicted = 0
        self.timed_out = 0

    def admit(self, conn: _Connection) -> bool:
        """Take ``conn`` in, closing the oldest waiting connection if that makes room;
        ``False`` when every open connection is serving a request."""
        if len(self.open) >= self.limits.max_connections:
            if not self.waiting:
                self.refused += 1
                return False
            oldest = next(iter(self.waiting))
            self.drop(oldest)
            oldest.force_close()
            self.evicted += 1
        self.open.add(conn)
        self.waiting[conn] = None
        return True

    def drop(self, conn: _Connection) -> None:
        self.open.discard(conn)
        self.waiting.pop(conn, None)

    def wrap(self, handler: _Handler) -> _Handler:
        """``handler`` marking its connection busy while it runs."""

        async def handle(request: Any) -> web.StreamResponse:
            conn = request.protocol
            if not isinstance(conn, _Connection):  # pragma: no cover - served elsewhere
                return await handler(request)
            conn.busy()
            try:
                return await handler(request)
            finally:
                conn.idle()

        return handle


#: The answer to a connection over the cap when every open one is serving.
_TOO_MANY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nRetry-After: 1\r\nContent-Length: %d\r\n\r\n%s"
)


class _Connection(RequestHandler):
    """aiohttp's HTTP/1 connection, held to its guard's :class:`Limits`.

    aiohttp has no timeout for reading headers (its keep-alive timer runs from
    the last response, whatever arrives), so this one adds it: a timer started
    when the connection opens or, on a kept-alive connection, at the first byte
    of the next request, and stopped when a request's handler starts.
    """

    __slots__ = ("_guard", "_header_timer", "_state")

    def __init__(self, manager: web.Server, guard: _Guard) -> None:
        super().__init__(
            manager,
            loop=asyncio.get_running_loop(),
            access_log=None,  # type: ignore[arg-type]  # as AppRunner(access_log=None): no log
            keepalive_timeout=guard.limits.keepalive_timeout_s,
            lingering_time=0,  # an unread body is never drained: the connection closes
        )
        self._guard = guard
        self._state = _HEADERS
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._guard.admit(self):
            self._state = _REFUSED
            limit = self._guard.limits.max_connections
            error = {
                "message": f"too many connections: this server holds at most {limit}",
                "type": "service_unavailable_error",
                "param": None,
                "code": 503,
            }
            body = orjson.dumps({"error": error})
            writer = cast(asyncio.Transport, transport)  # uvloop's is no WriteTransport subclass
            writer.write(_TOO_MANY % (len(body), body))
            writer.close()
            return
        super().connection_made(transport)
        self._await_headers()

    def data_received(self, data: bytes) -> None:
        if self._state == _REFUSED:
            return
        if self._state == _IDLE:
            self._await_headers()
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._state == _REFUSED:
            return
        self._state = _GONE
        self._stop_timer()
        self._guard.drop(self)
        super().connection_lost(exc)

    def busy(self) -> None:
        """A request's headers are complete and its handler runs."""
        if self._state != _GONE:
            self._state = _BUSY
            self._stop_timer()
            self._guard.waiting.pop(self, None)

    def idle(self) -> None:
        """The handler returned: the connection waits for the next request."""
        if self._state == _BUSY:
            self._state = _IDLE
            self._guard.waiting[self] = None

    def _await_headers(self) -> None:
        self._state = _HEADERS
        self._stop_timer()
        loop = asyncio.get_running_loop()
        self._header_timer = loop.call_later(self._guard.limits.header_timeout_s, self._late)

    def _late(self) -> None:
        self._header_timer = None
        if self._state == _HEADERS:
            self._guard.timed_out += 1
            self._guard.drop(self)
            self.force_close()

    def _stop_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None


@contextmanager
def serve_in_thread(
    app: web.Application,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    shutdown_timeout: float = 1.0,
    start_timeout: float = 30.0,
    limits: Limits = Limits(),
) -> Iterator[str]:
    """Serve ``app`` from a daemon thread with its own event loop; yields the base URL.

    For in-process use from synchronous code (the demo, tests) while a client
    runs its own loop: ``with serve_in_thread(make_app(FixedTiming())) as url:``.
    A failure to start (port taken, log file not writable) is raised here.
    The server stops when the block exits. Connections are held to ``limits``.
    """
    started: Future[str] = Future()
    stop: list[Callable[[], object]] = []

    async def main() -> None:
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        stop.append(lambda: loop.call_soon_threadsafe(done.set))
        async with running_server(
            app, host, port, shutdown_timeout=shutdown_timeout, limits=limits
        ) as url:
            started.set_result(url)
            await done.wait()

    def run() -> None:
        try:
            event_loop.run(main())
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
    limits: Limits = Limits(),
) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, then stop cleanly and return.

    ``on_ready`` is called with the base URL once the port is bound. Connections
    are held to ``limits``.
    """

    async def main() -> None:
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with suppress(NotImplementedError):  # Windows: Ctrl-C raises KeyboardInterrupt
                loop.add_signal_handler(sig, done.set)
        async with running_server(app, host, port, limits=limits) as url:
            if on_ready is not None:
                on_ready(url)
            await done.wait()

    event_loop.run(main())
