"""What a simulation reports: outcome and event codes, SimResult, the telemetry columns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

#: Outcome codes in :class:`SimResult`: completed; rejected at arrival (queue full,
#: or it could never fit); waited past the queue timeout before its first token;
#: not ended when the simulation stopped; the client gave up at
#: ``arrival + client_timeout_s``; preempted more than ``max_preemptions`` times.
OK, REJECTED, TIMED_OUT, PENDING, CLIENT_TIMEOUT, PREEMPTED = 0, 1, 2, 3, 4, 5
#: Event code for a listener: a request emitted a token.
TOKEN = -1

#: ``listener(request id, TOKEN or an outcome code, seconds)``: told of every token
#: and every request's end as the simulation produces them (the live server's feed).
Listener = Callable[[int, int, float], None]

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
#: :attr:`SimResult.load`: per telemetry row, sums over its iterations of the cost
#: model's decode sequences, prefill attention pairs and decode context tokens (the
#: prefill tokens are ``prefill_tokens * iterations``): what the GPU's work in the
#: row was, for utilisation.
LOAD_COLUMNS = ("decode_seqs", "prefill_attn", "decode_ctx")


def _empty_i64() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


@dataclass(slots=True)
class SimResult:
    """Per request (index = request id): outcome code, first-token and end time
    (seconds; NaN when never reached), preemptions, tokens emitted, the largest gap
    between two of its tokens (NaN below two tokens) and the first admission time
    (NaN when never admitted).

    Token times are kept when the simulation was asked to (``has_token_times``):
    request ``i``'s are ``iter_end[span_lo[j]:span_hi[j]]`` for ``j`` in
    ``span_ptr[i]:span_ptr[i+1]``, in time order (:meth:`token_times`).
    """

    outcome: np.ndarray
    first: np.ndarray
    end: np.ndarray
    preemptions: np.ndarray
    tokens: np.ndarray
    max_gap: np.ndarray
    admitted: np.ndarray
    #: One row per step or run of identical decode steps: see :data:`TELEMETRY_COLUMNS`.
    telemetry: np.ndarray
    iterations: int
    #: Telemetry rows the simulation made (``telemetry`` is empty when they went to a
    #: sink instead; see :meth:`Engine.run <burstlab.sim.engine.offline.Engine.run>`).
    steps: int = 0
    #: Per telemetry row, :data:`LOAD_COLUMNS`.
    load: np.ndarray = field(default_factory=lambda: np.zeros((0, len(LOAD_COLUMNS))))
    has_token_times: bool = True
    iter_end: np.ndarray = field(default_factory=lambda: np.zeros(0))
    span_ptr: np.ndarray = field(default_factory=_empty_i64)
    span_lo: np.ndarray = field(default_factory=_empty_i64)
    span_hi: np.ndarray = field(default_factory=_empty_i64)
    #: The replica of each telemetry row (clusters only).
    replica: np.ndarray | None = None

    def token_times(self, rid: int) -> np.ndarray:
        """Every output-token time of request ``rid`` (seconds)."""
        if not self.has_token_times:
            raise ValueError("this simulation did not keep token times")
        a, b = int(self.span_ptr[rid]), int(self.span_ptr[rid + 1])
        pairs = zip(self.span_lo[a:b], self.span_hi[a:b], strict=True)
        parts = [self.iter_end[lo:hi] for lo, hi in pairs]
        return np.concatenate(parts) if parts else np.empty(0)

    def token_lists(self) -> tuple[np.ndarray, np.ndarray]:
        """Every request's token times at once: ``(offsets, times)``, request ``i``'s
        being ``times[offsets[i]:offsets[i+1]]`` (seconds), for columnar export."""
        if not self.has_token_times:
            raise ValueError("this simulation did not keep token times")
        lengths = self.span_hi - self.span_lo
        cum = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        # Index of every token into iter_end: its span's start plus its place in it.
        index = np.repeat(self.span_lo - cum[:-1], lengths) + np.arange(cum[-1], dtype=np.int64)
        return cum[self.span_ptr], self.iter_end[index]
