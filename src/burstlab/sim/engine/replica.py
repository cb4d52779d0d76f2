"""Replica: one replica's state through a simulation, in the arrays the kernel steps.

It owns the numpy arrays of :mod:`~burstlab.sim.engine.kernel` (per-request
columns, the three heaps, the running batch, and the buffers of token spans,
iteration ends, telemetry rows and listener events), grows them when the kernel
asks, calls a Python cost model when the kernel waits for one, tells the listener
of what happened, and turns the arrays into a
:class:`~burstlab.sim.engine.result.SimResult`. :class:`Engine
<burstlab.sim.engine.offline.Engine>` and :class:`OnlineEngine
<burstlab.sim.engine.online.OnlineEngine>` drive it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from burstlab.sim.engine import kernel as k
from burstlab.sim.engine.config import EngineConfig
from burstlab.sim.engine.costs import CostModel, compile_cost
from burstlab.sim.engine.policies import POLICY_CODES, sort_key, sort_keys
from burstlab.sim.engine.result import LOAD_COLUMNS, TELEMETRY_COLUMNS, Listener, SimResult

_advance = k.advance

#: Listener events: none, request ends only, ends and every token.
NO_EVENTS, END_EVENTS, TOKEN_EVENTS = 0, 1, 2

#: ``sink(rows)``: takes a chunk of telemetry rows (the telemetry then the load
#: columns, :data:`~burstlab.sim.engine.result.TELEMETRY_COLUMNS` and
#: :data:`~burstlab.sim.engine.result.LOAD_COLUMNS`), in time order, so that a long
#: simulation need not hold them all.
TelemetrySink = Callable[[np.ndarray], None]
#: Rows per chunk given to a telemetry sink (12 float64 columns: 24 MiB).
SINK_ROWS = 1 << 18


def _config(cfg: EngineConfig) -> tuple[np.ndarray, np.ndarray]:
    ci = np.zeros(k.CI_SLOTS, dtype=np.int64)
    ci[k.MAX_SEQS] = cfg.max_num_seqs
    ci[k.BUDGET] = cfg.max_batched_tokens
    ci[k.CHUNKED] = int(cfg.chunked_prefill)
    ci[k.BLOCK] = cfg.block_size
    ci[k.NUM_BLOCKS] = cfg.num_blocks
    ci[k.RECOMPUTE] = int(cfg.preemption == "recompute")
    ci[k.POLICY] = POLICY_CODES[cfg.scheduler]
    ci[k.CAP] = -1 if cfg.queue_cap is None else cfg.queue_cap
    ci[k.MAX_PROMPT] = -1 if cfg.chunked_prefill else cfg.max_batched_tokens
    ci[k.MAX_PREEMPT] = -1 if cfg.max_preemptions is None else cfg.max_preemptions
    ci[k.MAX_LEN] = -1 if cfg.max_model_len is None else cfg.max_model_len
    cf = np.zeros(k.CF_SLOTS, dtype=np.float64)
    cf[k.BYTES_PER_TOKEN] = cfg.kv_bytes_per_token
    cf[k.BANDWIDTH] = cfg.swap_bandwidth
    cf[k.AGING] = cfg.aging
    cf[k.QUEUE_TIMEOUT] = math.inf if cfg.queue_timeout_s is None else cfg.queue_timeout_s
    cf[k.CLIENT_TIMEOUT] = math.inf if cfg.client_timeout_s is None else cfg.client_timeout_s
    return ci, cf


class Replica:
    """One replica's scheduler state; requests are indexed by id (arrival order)."""

    def __init__(
        self,
        cfg: EngineConfig,
        cost: CostModel,
        *,
        arrival_s: Sequence[float] | np.ndarray,
        input_tokens: Sequence[int] | np.ndarray,
        output_tokens: Sequence[int] | np.ndarray,
        predicted: Sequence[int] | np.ndarray | None,
        token_times: bool = True,
        events: int = NO_EVENTS,
        telemetry_sink: TelemetrySink | None = None,
    ) -> None:
        self.cfg = cfg
        self.cost = cost
        arrivals = np.asarray(arrival_s, dtype=np.float64)
        prompts = np.maximum(np.asarray(input_tokens, dtype=np.int64), 1)
        outputs = np.maximum(np.asarray(output_tokens, dtype=np.int64), 1)
        if arrivals.size and np.any(np.diff(arrivals) < 0):
            raise ValueError("arrival_s must be sorted")
        n = arrivals.size
        cap = max(n, 64)
        self.ci, self.cf = _config(cfg)
        self.ck, self.cp = compile_cost(cost)
        self.ri = np.zeros((cap, k.RI_COLUMNS), dtype=np.int32)
        self.rf = np.full((cap, k.RF_COLUMNS), np.nan)
        self.ri[:, k.LASTSPAN] = -1
        self.ri[:, k.OUTCOME] = k.PENDING
        self.ri[:n, k.PROMPT] = prompts
        self.ri[:n, k.TARGET] = prompts
        self.ri[:n, k.OUTPUT] = outputs
        self.rf[:n, k.ARRIVAL] = arrivals
        self.rf[:n, k.KEY] = sort_keys(cfg, prompts, outputs, predicted)
        self.s = np.zeros(k.S_SLOTS, dtype=np.int64)
        self.s[k.N] = n
        self.s[k.FREE] = cfg.num_blocks
        self.s[k.TOKENS] = int(token_times)
        self.s[k.EVENTS] = events
        # Python-int views of the state: a fleet reads a few numbers per event, and a
        # memoryview reads them several times faster than numpy scalars.
        self.sv = self.s.data
        self.sf = np.zeros(k.SF_SLOTS, dtype=np.float64)
        self.sfv = self.sf.data
        seqs = cfg.max_num_seqs
        self.hq = np.zeros((cap + seqs + 16, 3))
        self.hd0 = np.zeros((cap if cfg.queue_timeout_s is not None else 1, 3))
        self.hd1 = np.zeros((cap if cfg.client_timeout_s is not None else 1, 3))
        self.rb = np.zeros((4, seqs + 1), dtype=np.int64)
        self.sp = np.zeros((2 * n + 4 * seqs + 64 if token_times else 1, 3), dtype=np.int64)
        self.iend = np.zeros(8 * n + 1024 if token_times else 1)
        rows = min(2 * n + 1024, SINK_ROWS) if telemetry_sink is not None else 2 * n + 1024
        self.tele = np.zeros((rows, k.TELE_COLUMNS))
        #: Given full chunks of telemetry rows instead of keeping them all.
        self.telemetry_sink = telemetry_sink
        self.steps = 0  # telemetry rows given to the sink
        self.ev = np.zeros((cap + 4 * seqs + 16 if events else 1, 3))
        self.listener: Listener | None = None
        #: Called with the number of requests ended so far, now and then.
        self.progress: Callable[[int], None] | None = None
        self._pack()

    # --- what fleets, PD pools and live servers read -------------------------------

    @property
    def n(self) -> int:
        """Requests entered so far."""
        return int(self.s[k.N])

    @property
    def outstanding(self) -> int:
        """Requests entered and not ended: running, waiting or not taken in yet."""
        s = self.sv
        return int(s[k.N] - s[k.NEXT] + s[k.NRUN] + s[k.QCOUNT])

    @property
    def running_count(self) -> int:
        return int(self.sv[k.NRUN])

    @property
    def waiting_count(self) -> int:
        """Requests in the waiting queue."""
        return int(self.sv[k.QCOUNT])

    @property
    def free_blocks(self) -> int:
        return int(self.sv[k.FREE])

    @property
    def preemptions(self) -> int:
        return int(self.sv[k.PREEMPTIONS])

    @property
    def last_busy(self) -> float:
        """End of its last iteration (0 when it never ran one; seconds)."""
        return float(self.sfv[k.LAST_END])

    @property
    def now(self) -> float:
        """When its next step starts, or where it stopped (seconds)."""
        return float(self.sfv[k.T])

    @now.setter
    def now(self, t: float) -> None:
        self.sf[k.T] = t

    # --- entering requests and running ----------------------------------------------

    def enter(
        self,
        now: float,
        input_tokens: int,
        output_tokens: int,
        key: float | None,
        *,
        kv_ready: bool,
    ) -> int:
        """A request arriving at ``now`` (seconds; a live replica's), to be taken in;
        its id. ``kv_ready``: its prompt's KV and first token come from elsewhere."""
        rid = self.n
        if rid == self.ri.shape[0]:
            self._grow_requests(2 * rid)
        prompt, output = max(int(input_tokens), 1), max(int(output_tokens), 1)
        k.enter(
            self.ri,
            self.rf,
            self.s,
            now,
            prompt,
            output,
            sort_key(self.cfg, prompt, output, key),
            kv_ready,
        )
        return rid

    def _grow_requests(self, cap: int) -> None:
        old = self.ri.shape[0]
        ri = np.zeros((cap, k.RI_COLUMNS), dtype=np.int32)
        ri[:, k.LASTSPAN] = -1
        ri[:, k.OUTCOME] = k.PENDING
        ri[:old] = self.ri
        rf = np.full((cap, k.RF_COLUMNS), np.nan)
        rf[:old] = self.rf
        self.ri, self.rf = ri, rf
        self.hq = _grown(self.hq, cap + self.cfg.max_num_seqs + 16)
        if self.cfg.queue_timeout_s is not None:
            self.hd0 = _grown(self.hd0, cap)
        if self.cfg.client_timeout_s is not None:
            self.hd1 = _grown(self.hd1, cap)
        self._pack()

    def _pack(self) -> None:
        """The kernel's arguments, kept together (rebuilt when an array is replaced)."""
        self._state = (
            self.ri,
            self.rf,
            self.s,
            self.sf,
            self.ci,
            self.cf,
            self.ck,
            self.cp,
            self.hq,
            self.hd0,
            self.hd1,
            self.rb,
            self.sp,
            self.iend,
            self.tele,
            self.ev,
        )

    def advance(self, until: float) -> int:
        """Run every step starting at or before ``until`` (seconds): IDLE or BOUNDARY."""
        status = _advance(*self._state, until, self.progress is not None)
        if status >= k.HEARD:
            self._tell()
            status -= k.HEARD
        # Anything but IDLE and BOUNDARY asks for Python's help, then the kernel goes on.
        while status > k.BOUNDARY:
            if status == k.NEED_COST:
                sf = self.sf
                seconds = self.cost.iteration_s(
                    float(sf[k.PT]), float(sf[k.PA]), float(sf[k.DS]), float(sf[k.DC])
                )
                sf[k.COST] = float(seconds)
            elif status == k.GROW:
                self._grow_buffers()
            elif self.progress is not None:  # PROGRESS
                self.progress(int(self.s[k.ENDED]))
            status = _advance(*self._state, until, self.progress is not None)
            if status >= k.HEARD:
                self._tell()
                status -= k.HEARD
        return status

    def _tell(self) -> None:
        """The listener hears of the events the kernel buffered, in order."""
        count = int(self.s[k.NEV])
        self.s[k.NEV] = 0
        listener = self.listener
        if listener is None:
            return
        for rid, code, when in self.ev[:count].tolist():
            listener(int(rid), int(code), when)

    def _grow_buffers(self) -> None:
        s, seqs = self.s, self.cfg.max_num_seqs
        if s[k.TOKENS]:
            if s[k.NSPAN] + seqs + 1 > self.sp.shape[0]:
                self.sp = _grown(self.sp, 2 * self.sp.shape[0] + seqs)
            if s[k.ITER] + 1 > self.iend.shape[0]:
                self.iend = _grown(self.iend, 2 * self.iend.shape[0])
        if s[k.NTELE] + 1 > self.tele.shape[0]:
            if self.telemetry_sink is not None:
                self._flush(final=False)
            else:
                self.tele = _grown(self.tele, 2 * self.tele.shape[0])
        if s[k.EVENTS]:
            need = int(s[k.NEV] + (s[k.N] - s[k.ENDED]) + 2 * seqs + 2)
            if need > self.ev.shape[0]:
                self.ev = _grown(self.ev, max(need, 2 * self.ev.shape[0]))
        self._pack()

    def arrivals(self) -> np.ndarray:
        """Every entered request's arrival time (seconds), by id."""
        return self.rf[: self.n, k.ARRIVAL].copy()

    # --- what it recorded ----------------------------------------------------------

    def _flush(self, *, final: bool) -> None:
        """Give the sink the telemetry rows so far, all (``final``) or all but the last,
        which stays so that the next iterations can still extend it: the rows the sink
        gets are exactly those a run without one keeps."""
        assert self.telemetry_sink is not None
        count = int(self.s[k.NTELE])
        upto = count if final else count - 1
        if upto > 0:
            self.telemetry_sink(self.tele[:upto].copy())
            self.steps += upto
        self.tele[: count - upto] = self.tele[upto:count]
        self.s[k.NTELE] = count - upto

    def result(self) -> SimResult:
        """What the simulation recorded, per request and per step."""
        if self.telemetry_sink is not None:
            self._flush(final=True)
        n = self.n
        ri, rf = self.ri[:n], self.rf[:n]
        tele = self.tele[: self.s[k.NTELE]]
        tokens = bool(self.s[k.TOKENS])
        t_cols = len(TELEMETRY_COLUMNS)
        result = SimResult(
            outcome=ri[:, k.OUTCOME].astype(np.int8),
            first=rf[:, k.FIRST].copy(),
            end=rf[:, k.END].copy(),
            preemptions=ri[:, k.PREEMPT].astype(np.int32),
            tokens=ri[:, k.GEN].copy(),
            max_gap=rf[:, k.MAXGAP].copy(),
            admitted=rf[:, k.ADMITTED].copy(),
            telemetry=tele[:, :t_cols].copy(),
            load=tele[:, t_cols : t_cols + len(LOAD_COLUMNS)].copy(),
            iterations=int(self.s[k.ITER]),
            steps=self.steps + tele.shape[0],
            has_token_times=tokens,
        )
        if tokens:
            spans = self.sp[: self.s[k.NSPAN]]
            # Spans were made in time order: a stable sort by request keeps it.
            order = np.argsort(spans[:, 0], kind="stable")
            spans = spans[order]
            result.span_ptr = np.searchsorted(spans[:, 0], np.arange(n + 1)).astype(np.int64)
            result.span_lo = spans[:, 1].copy()
            result.span_hi = spans[:, 2].copy()
            result.iter_end = self.iend[: self.s[k.ITER]].copy()
        return result


def _grown(a: np.ndarray, rows: int) -> np.ndarray:
    """``a`` with ``rows`` rows, its rows kept (zeros after them)."""
    out = np.zeros((rows, *a.shape[1:]), dtype=a.dtype)
    out[: a.shape[0]] = a
    return out
