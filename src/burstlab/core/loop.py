"""The one place that chooses the event loop: uvloop's where it is installed, asyncio's otherwise.

uvloop roughly halves the per-request cost of the HTTP client and server; it
does not exist on Windows, where asyncio's loop is used.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

try:
    import uvloop
except ImportError:  # pragma: no cover - Windows has no uvloop
    uvloop = None  # type: ignore[assignment]

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A fresh event loop (not installed as the current one)."""
    return uvloop.new_event_loop() if uvloop is not None else asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a fresh loop from :func:`new_event_loop`."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)


def loop_version() -> str:
    """``"uvloop X.Y"`` or ``"asyncio"``: which loop runs, for a run's manifest."""
    return f"uvloop {getattr(uvloop, '__version__', '?')}" if uvloop is not None else "asyncio"
