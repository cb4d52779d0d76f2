"""The connect timeout fires on time (RELIABILITY.md F10): a listening socket on
127.0.0.1 whose backlog is full never answers a SYN, so a connect to it stalls."""

from __future__ import annotations

import asyncio
import math
import select
import socket
from collections.abc import Iterator

import pytest

from burstlab.bench.client import Clock, HttpTarget, Outgoing, Timeouts, session_timeout
from burstlab.results.records import Record


@pytest.fixture
def blackhole() -> Iterator[str]:
    """The URL of a socket that listens and never accepts, its backlog filled, so the
    next connect's SYN is dropped and the connect stalls."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers: list[socket.socket] = []
    try:
        for _ in range(64):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
            _, writable, _ = select.select([], [filler], [], 0.5)
            if not writable:
                break
        else:
            pytest.skip("this kernel accepts every connect into the backlog")
        yield f"http://127.0.0.1:{port}"
    finally:
        for filler in fillers:
            filler.close()
        server.close()


async def connect_once(url: str, timeouts: Timeouts) -> tuple[Record, float, float]:
    """One request to ``url``: its record, the seconds the client measured from the
    send to the failure, and the worst lateness of a 10 ms timer meanwhile (how busy
    the machine was)."""
    loop = asyncio.get_running_loop()
    clock = Clock(0)
    worst = 0.0

    async def probe() -> None:
        nonlocal worst
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            worst = max(worst, loop.time() - before - 0.01)

    async with HttpTarget(url, "/v1/completions", clock, timeouts=timeouts) as target:
        # Start just after a whole second of the loop clock: a deadline rounded up to
        # the next whole second (aiohttp's default above 5 s) then overshoots by ~0.85 s.
        await asyncio.sleep((1.05 - loop.time() % 1.0) % 1.0)
        watcher = asyncio.create_task(probe())
        rec = Record(request_id=0, arrival_s=0.0, output_tokens=4)
        start = clock.now()
        await target.send(Outgoing(b"{}", "t-0"), rec)
        watcher.cancel()
    assert rec.end_s is not None
    return rec, rec.end_s - start, worst


@pytest.mark.slow
def test_connect_timeout_fires_on_time(blackhole: str) -> None:
    timeout = 5.1  # above aiohttp's 5 s rounding threshold, the default is 10 s
    rec, took, busy = asyncio.run(
        connect_once(blackhole, Timeouts(connect=timeout, idle=30.0, total=60.0))
    )
    assert (rec.outcome, rec.error_kind, rec.error_subkind) == ("failed", "connect", "timeout")
    assert rec.sent_s is None
    assert took >= timeout - 0.05
    # Generous against a busy machine (whatever the loop's own lateness was, plus
    # 0.25 s), and still well below the 0.85 s a rounded deadline adds here.
    assert took - timeout <= busy + 0.25, (took, busy)


def test_a_short_connect_timeout_is_a_connect_timeout(blackhole: str) -> None:
    rec, took, _ = asyncio.run(
        connect_once(blackhole, Timeouts(connect=0.3, idle=30.0, total=60.0))
    )
    assert (rec.error_kind, rec.error_subkind) == ("connect", "timeout")
    assert took >= 0.25


def test_no_timeout_is_rounded_up_to_a_whole_second() -> None:
    timeout = session_timeout(Timeouts(connect=10.0, idle=60.0))
    assert timeout.ceil_threshold == math.inf
    assert timeout.connect == timeout.sock_connect == 10.0
    assert timeout.sock_read == 60.0
    assert timeout.total is None
