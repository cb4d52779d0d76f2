"""Running a server app: in a thread of this process (tests, the demo) or until a signal (the CLI).

The event loop is :mod:`burstlab.core.loop`'s, the one choice for all of burstlab.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from contextlib import asynccontextmanager, contextmanager, suppress

from aiohttp import web

from burstlab.core import loop as event_loop

#: Listen backlog: hundreds of clients connect at once when a burst starts.
BACKLOG = 4096


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

    event_loop.run(main())
