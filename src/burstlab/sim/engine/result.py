"""What a simulation reports: outcome and event codes, SimResult, the telemetry columns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Outcome codes in :class:`SimResult`.
OK, REJECTED, TIMED_OUT, PENDING = 0, 1, 2, 3
#: Event code for a listener: a request emitted a token.
TOKEN = -1

#: ``listener(request id, TOKEN or an outcome code, seconds)``: told of every token
#: and every request's end as the simulation produces them (the live server's feed).
Listener = Callable[[int, int, float], None]


@dataclass(slots=True)
class SimResult:
    """Per request (index = request id): outcome code, first and end time (NaN when
    never reached), preemption count, and token-time spans into ``iter_end``."""

    outcome: np.ndarray
    first: np.ndarray
    end: np.ndarray
    preemptions: np.ndarray
    spans: list[list[tuple[int, int]]]
    iter_end: np.ndarray
    #: One row per step or fast run: start, end, iterations, batch size, prefill
    #: tokens, running, waiting, KV blocks used, preemptions so far.
    telemetry: np.ndarray
    iterations: int
    #: The replica of each telemetry row (clusters only).
    replica: np.ndarray | None = None

    def token_times(self, rid: int) -> np.ndarray:
        """Every output-token time of request ``rid`` (seconds)."""
        parts = [self.iter_end[a:b] for a, b in self.spans[rid]]
        return np.concatenate(parts) if parts else np.empty(0)


TELEMETRY_COLUMNS = (
    "start_s",
    "end_s",
    "iterations",
    "batch",
    "prefill_tokens",
    "running",
    "waiting",
    "kv_blocks",
    "preemptions",
)
