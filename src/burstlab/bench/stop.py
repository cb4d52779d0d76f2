"""How a run is stopped by signals: SIGINT and SIGTERM in the parent and in worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from burstlab.bench.runner import Runner


class StopState:
    """The stop requests one process has had. Each SIGINT or SIGTERM raises ``level``:
    1 stops sending (requests in flight get the grace period), 2 cancels them. In a
    worker, ``shared`` is the level the parent asks for; a signal takes the worker to
    at least that level, so a SIGTERM sent to the whole process group and the
    parent's own forwarded one count once. ``notify`` hears of each new level."""

    __slots__ = ("grace_s", "level", "notify", "shared", "signum")

    def __init__(
        self,
        shared: Any | None = None,
        notify: Callable[[str], None] | None = None,
        grace_s: float = 0.0,
    ) -> None:
        self.level = 0
        self.signum: int | None = None
        self.shared = shared
        self.notify = notify
        self.grace_s = grace_s

    def request(self, signum: int) -> None:
        before = self.level
        if self.signum is None:
            self.signum = signum
        if self.shared is None:
            self.level = min(self.level + 1, 2)
        else:
            self.level = max(self.level, int(self.shared.value), 1)
        if self.notify is not None and self.level > before:
            name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
            if self.level == 1:
                self.notify(
                    f"{name}: stopping; no new requests, those in flight may finish "
                    f"for {self.grace_s:g} s ({name} again cancels them)"
                )
            else:
                self.notify(f"{name} again: cancelling the requests in flight")

    def sync(self) -> int:
        """The level, raised to what the parent asks for (a stop before the loop ran)."""
        if self.shared is not None and self.shared.value:
            self.level = max(self.level, int(self.shared.value))
            if self.signum is None:
                self.signum = signal.SIGTERM
        return self.level

    @property
    def reason(self) -> str | None:
        if self.signum is None:
            return None
        return "sigterm" if self.signum == signal.SIGTERM else "sigint"


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def process_signals(
    stop: StopState,
    signals: tuple[int, ...],
    forward: Callable[[], None] | None = None,
) -> Iterator[None]:
    """While the block runs outside an event loop, a signal only records a stop
    request (and calls ``forward``), never raises mid-write; the event loop's own
    handlers (:func:`loop_signals`) take over while a runner runs. The previous
    handlers come back afterwards. Outside the main thread, nothing is changed."""
    if not _main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        stop.request(signum)
        if forward is not None:
            forward()

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)


@contextlib.contextmanager
def loop_signals(stop: StopState, runner: Runner, signals: tuple[int, ...]) -> Iterator[None]:
    """While a runner runs: a signal stops it (the first lets requests in flight
    finish for the grace period, the second cancels them), handled on the event loop."""
    if not _main_thread():
        yield
        return
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        stop.request(signum)
        runner.stop(stop.reason or "sigint", now=stop.level >= 2)

    previous = {sig: signal.getsignal(sig) for sig in signals}
    added: list[int] = []
    try:
        for sig in signals:
            loop.add_signal_handler(sig, on_signal, sig)
            added.append(sig)
    except NotImplementedError:  # pragma: no cover - Windows: the process handlers stay
        pass
    try:
        yield
    finally:
        for sig in added:
            loop.remove_signal_handler(sig)
            old = previous[sig]
            signal.signal(sig, old if old is not None else signal.SIG_DFL)


@contextlib.contextmanager
def ignoring(sig: int) -> Iterator[None]:
    """``sig`` ignored for the block (child processes started in it keep ignoring it)."""
    if not _main_thread():
        yield
        return
    old = signal.signal(sig, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(sig, old if old is not None else signal.SIG_DFL)
