"""The live view of a running benchmark (rich), and its quiet stand-in."""

from __future__ import annotations

import time
from collections import deque

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.table import Table

from burstlab.results.metrics import percentile
from burstlab.results.records import Record

#: Recent requests the rolling figures (lag p99, TTFT p50) are taken over.
WINDOW = 500


class LiveProgress:
    """Sent, completed, failed, offered vs achieved rate, lag p99 and rolling TTFT p50.

    ``add`` is O(1) and runs on the benchmark's event loop; the table is drawn at
    most twice a second (``refresh``), so the display costs the client little.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.scheduled = 0
        self.done = 0
        self.sent: int | None = None
        self.ok = 0
        self.failed = 0
        self.other = 0
        self.lags: deque[float] = deque(maxlen=WINDOW)
        self.ttfts: deque[float] = deque(maxlen=WINDOW)
        self.recent: deque[tuple[float, float]] = deque(maxlen=WINDOW)
        self._live: Live | None = None
        self._started = time.monotonic()

    def start(self, scheduled: int) -> None:
        self.scheduled = scheduled
        self._started = time.monotonic()
        self._live = Live(self._render(), console=self.console, auto_refresh=False, transient=False)
        self._live.start()

    def sent_one(self) -> None:
        """A request went out (known only in-process; worker runs show completions)."""
        self.sent = (self.sent or 0) + 1

    def add(self, rec: Record) -> None:
        self.done += 1
        if rec.outcome == "ok":
            self.ok += 1
            if rec.first_s is not None and rec.sent_s is not None:
                self.ttfts.append(rec.first_s - rec.sent_s)
        elif rec.outcome == "failed":
            self.failed += 1
        else:
            self.other += 1
        if rec.dispatched_s is not None:
            self.lags.append(rec.dispatched_s - rec.arrival_s)
        self.recent.append((rec.arrival_s, rec.end_s if rec.end_s is not None else rec.arrival_s))

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render(), refresh=True)

    def stop(self) -> None:
        if self._live is not None:
            self._live.update(self._render(), refresh=True)
            self._live.stop()
            self._live = None
            self.console.print()

    def _render(self) -> Table:
        table = Table(title="burstlab bench", show_header=True, header_style="bold")
        for name in (
            "sent",
            "done",
            "ok",
            "failed",
            "other",
            "offered/s",
            "achieved/s",
            "lag p99",
            "TTFT p50",
        ):
            table.add_column(name, justify="right")
        offered = achieved = float("nan")
        if len(self.recent) > 1:
            arr = np.array(self.recent)
            span_in = np.ptp(arr[:, 0])
            span_out = np.ptp(arr[:, 1])
            offered = (len(arr) - 1) / span_in if span_in > 0 else float("nan")
            achieved = (len(arr) - 1) / span_out if span_out > 0 else float("nan")
        lag = (percentile(self.lags, 99) or float("nan")) * 1e3
        ttft = (percentile(self.ttfts, 50) or float("nan")) * 1e3
        table.add_row(
            "-" if self.sent is None else str(self.sent),
            f"{self.done}/{self.scheduled}",
            str(self.ok),
            str(self.failed),
            str(self.other),
            f"{offered:.1f}",
            f"{achieved:.1f}",
            f"{lag:.1f} ms",
            f"{ttft:.1f} ms",
        )
        return table
