"""Waiting for a server to come up before a run (``bench --wait-ready SECONDS``).

A server that is still loading its model refuses connections, or answers 503 at
``/health`` (llama.cpp, TGI, vLLM). A benchmark started then would record failures
that say nothing about serving. :func:`wait_ready` polls ``/health``, then
``/v1/models``, until one answers 200 or the time is up; it runs before the run
directory exists, so a server that never comes up leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from burstlab.core.errors import BurstlabError
from burstlab.core.loop import run as run_loop

#: The paths polled, in order, each round: the first to answer 200 means ready.
READY_PATHS = ("/health", "/v1/models")
#: Seconds between rounds of polls.
POLL_INTERVAL_S = 0.25
#: Seconds one poll may take at most (less when the time left is shorter).
POLL_TIMEOUT_S = 5.0


class ServerNotReadyError(BurstlabError):
    """The server did not answer 200 at any of :data:`READY_PATHS` in time."""


@dataclass(frozen=True, slots=True)
class Ready:
    """How the wait ended: the path that answered 200, the rounds of polls it took
    and the seconds waited."""

    path: str
    rounds: int
    waited_s: float


def wait_ready(
    url: str,
    headers: dict[str, str] | None = None,
    *,
    within_s: float,
    insecure: bool = False,
    shown: str | None = None,
    interval_s: float = POLL_INTERVAL_S,
    notify: Callable[[str], None] | None = None,
) -> Ready:
    """Poll ``url``'s :data:`READY_PATHS` every ``interval_s`` seconds until one answers
    HTTP 200, for at most ``within_s`` seconds. Raises :class:`ServerNotReadyError` naming
    the server (``shown``: its URL with credentials removed) and the last answer of
    each path when it never does. ``notify`` is told, in a sentence, when the first
    round fails (the wait begins) and, then, when the server is ready."""
    return run_loop(
        _wait(
            url,
            headers or {},
            within_s=within_s,
            insecure=insecure,
            shown=shown or url,
            interval_s=interval_s,
            notify=notify or (lambda _: None),
        )
    )


async def _wait(
    url: str,
    headers: dict[str, str],
    *,
    within_s: float,
    insecure: bool,
    shown: str,
    interval_s: float,
    notify: Callable[[str], None],
) -> Ready:
    start = time.monotonic()
    deadline = start + within_s
    base = url.rstrip("/")
    last: dict[str, str] = {}
    rounds = 0
    async with aiohttp.ClientSession() as session:
        while True:
            rounds += 1
            for path in READY_PATHS:
                left = deadline - time.monotonic()
                timeout = aiohttp.ClientTimeout(total=max(0.05, min(POLL_TIMEOUT_S, left)))
                try:
                    async with session.get(
                        base + path,
                        headers=headers,
                        ssl=not insecure,
                        allow_redirects=False,
                        timeout=timeout,
                    ) as resp:
                        if resp.status == 200:
                            waited = time.monotonic() - start
                            if rounds > 1:
                                notify(
                                    f"{shown} is ready ({path} answered 200 after {waited:.1f} s)"
                                )
                            return Ready(path, rounds, waited)
                        last[path] = f"HTTP {resp.status}"
                except (TimeoutError, OSError, ValueError, aiohttp.ClientError) as exc:
                    last[path] = _reason(exc)
            if rounds == 1:
                notify(
                    f"waiting up to {within_s:g} s for {shown} to answer {' or '.join(READY_PATHS)}"
                )
            left = deadline - time.monotonic()
            if left <= 0:
                answers = "; ".join(f"{path}: {why}" for path, why in last.items())
                raise ServerNotReadyError(
                    f"{shown} was not ready within {within_s:g} s "
                    f"({rounds} rounds of polls; last: {answers})",
                    hint="check --url and that the server is starting, or wait longer "
                    "with a larger --wait-ready",
                )
            await asyncio.sleep(min(interval_s, left))


def _reason(exc: BaseException) -> str:
    """A failed poll in a few words (never the URL, which may hold credentials)."""
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "no answer (timeout)"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connection refused" if "refused" in str(exc).lower() else "cannot connect"
    return type(exc).__name__
