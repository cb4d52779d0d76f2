"""One serving-engine replica: continuous batching, chunked prefill, paged KV, preemption.

The scheduler follows vLLM's (V1) rules, one iteration at a time:

1. **Intake** at the iteration's start ``t``: arrivals up to ``t`` join the waiting
   queue in arrival order, unless the queue already holds ``queue_cap`` requests at
   that arrival's time (then it is rejected at its arrival time, ``http_429``).
   A request that could never run is rejected at its arrival too: its whole
   context (``prompt + output - 1`` KV tokens) needs more blocks than the cache
   has, or, without chunked prefill, its prompt exceeds the token budget (vLLM
   refuses both up front: ``max_model_len`` and ``max_num_batched_tokens``).
   A waiting request still waiting ``queue_timeout_s`` after it arrived fails at
   exactly that time (``timeout``, ``queue``).
2. **Running first**, in admission order: a request still prefilling takes a
   chunk of ``min(remaining prefill, token budget)`` tokens (the budget is
   ``max_batched_tokens``); a decoding request takes one token. A request needs
   ``ceil(kv_tokens / block_size)`` KV blocks; when a step would need more
   blocks than are free, the most recently admitted running request is
   preempted (recompute: its blocks are freed and it re-queues at its own
   priority, to prefill its prompt and the tokens generated so far again; swap:
   its KV goes to host memory and comes back at PCIe speed when it is
   re-admitted) until the step fits.
3. **Admission**, only on a step that preempted nothing: waiting requests in the
   scheduler's order (FCFS by arrival; shortest- or longest-request-first by a
   length key, with optional aging) while fewer than ``max_num_seqs`` run,
   budget remains and their first chunk's blocks are free. Without chunked
   prefill a request is admitted only if its whole prompt fits the budget.
4. The iteration lasts ``cost.iteration_s(...)`` of its batch. At its end every
   decoding request emits a token, and a request whose prefill completes emits
   one (the first token, or the next one after a recompute); a request that has
   emitted all its output tokens completes and frees its blocks.

**Fast path.** While the batch is decode-only and nothing can change it (no
completion, no block allocation failure, no admissible arrival, no preemption
on the step), the next ``k`` iterations differ only in the context length,
which grows by the batch size each time: their latencies are one vectorised
cost-model call and their end times a cumulative sum. Every token time is
still produced, exactly as iterating one step at a time would (``fast=False``
does that, and the tests compare the two).

**Live runs** (:class:`OnlineEngine`) take the same closed-form runs, planned
when their batch forms and applied lazily: a call to advance to ``now`` announces
the tokens of the run's iterations that start by ``now`` and applies the run only
once its last iteration has started. A request entering meanwhile cuts the run
at the first iteration boundary at or after its arrival, and so does any
arrival or queue deadline known when the run is planned, even when the batch is
full: then every intake (a rejection, a timeout) happens at the boundary where
stepping would make it, and what a router or controller reads between events
is what stepping would show.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class CostModel(Protocol):
    """Seconds per iteration for batches described by four (broadcast) arrays.

    Elementwise and pure: each iteration's seconds depend only on its own four
    numbers, so the engine may reuse a value it computed before (:class:`_Costs`)
    within one simulation.
    """

    def iteration_s(
        self,
        prefill_tokens: np.ndarray,
        prefill_attn: np.ndarray,
        decode_seqs: np.ndarray,
        decode_ctx: np.ndarray,
    ) -> np.ndarray: ...


class EngineConfig(BaseModel):
    """Scheduler and memory settings of one replica (vLLM's names where they exist)."""

    model_config = ConfigDict(extra="forbid")

    max_num_seqs: int = Field(256, ge=1)
    max_batched_tokens: int = Field(8192, ge=1)
    chunked_prefill: bool = True
    block_size: int = Field(16, ge=1)
    num_blocks: int = Field(2048, ge=1)
    preemption: Literal["recompute", "swap"] = "recompute"
    #: Bytes per KV token (for swap cost) and host link bandwidth in bytes/s.
    kv_bytes_per_token: int = Field(524_288, ge=1)
    swap_bandwidth: float = Field(25e9, gt=0)
    scheduler: Literal["fcfs", "srf", "lrf"] = "fcfs"
    #: What shortest/longest-first sort on: input length, the true output length
    #: (an oracle), or a predicted output length given per request.
    key: Literal["input", "output", "predicted", "total"] = "input"
    #: Priority aging for srf/lrf, in key units per second waited (0: none).
    aging: float = Field(0.0, ge=0)
    queue_cap: int | None = Field(None, ge=0)
    queue_timeout_s: float | None = Field(None, gt=0)


@dataclass(slots=True, eq=False)  # compared by identity (``running.remove``)
class _Req:
    rid: int
    arrival: float
    prompt: int
    output: int
    key: float
    target: int = 0  # tokens to prefill before the next token (prompt, or prompt+generated)
    kv: int = 0  # tokens whose KV is resident on the GPU
    blocks: int = 0
    generated: int = 0
    swapped: int = 0  # KV tokens held in host memory after a swap-out
    transferred: bool = False  # ``swapped`` KV arrived from elsewhere, already paid for
    preemptions: int = 0
    spans: list[tuple[int, int]] = field(default_factory=list)


#: Outcome codes in :class:`SimResult`.
OK, REJECTED, TIMED_OUT, PENDING = 0, 1, 2, 3
#: Event code for a listener: a request emitted a token.
TOKEN = -1

#: ``listener(request id, TOKEN or an outcome code, seconds)``: told of every token
#: and every request's end as the simulation produces them (the live server's feed).
Listener = Callable[[int, int, float], None]


@dataclass(slots=True)
class _Pending:
    """A closed-form decode run: ``decode`` (fixed for the whole run) decodes one
    token per iteration; iteration ``j`` starts at ``t`` (``j = 0``) or ``ends[j-1]``
    and ends at ``ends[j]`` (seconds). Blocks for the first iteration's tokens are
    reserved; ``kv`` and ``blocks`` of each request stay as before the run until
    it is applied (:meth:`_Run._commit`)."""

    t: float
    decode: list[_Req]
    ends: np.ndarray
    #: Iterations whose tokens a live engine's listener has heard of.
    told: int = 0

    def started(self, now: float) -> int:
        """Iterations of the run that start at or before ``now`` (at least 1)."""
        ends = self.ends
        return min(ends.size, 1 + int(ends.searchsorted(now, side="right")))

    def last_start(self) -> float:
        """Start of the run's last iteration (seconds)."""
        return float(self.ends[-2]) if self.ends.size > 1 else self.t


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


class _Costs:
    """Iteration seconds from ``model``, memoised (results are unchanged: a cost
    model is elementwise and pure, so a stored value is what a new call returns).

    An array call costs tens of microseconds of numpy overhead whatever its
    length, far more than its arithmetic, and every closed-form run needs one; a
    single step passes Python floats (the models' plain-float path, about 1.5 us
    for :class:`~burstlab.sim.cost.Roofline`), and is still kept. Here
    decode-only iterations read a table per batch size, indexed by decode context
    in tokens and grown (by doubling, one call) to the largest context asked for;
    other iterations are kept by their exact four numbers. Both stop growing at a
    bound (then the model is called directly), so memory stays under ~40 MB. One
    lives as long as a simulation (a model changed in place between two runs is
    read afresh).
    """

    #: Most table entries (float64) over all batch sizes, and most kept steps.
    TABLE_LIMIT = 1 << 22
    STEP_LIMIT = 1 << 16

    def __init__(self, model: CostModel) -> None:
        self.model = model
        self.tables: dict[int, np.ndarray] = {}
        self.table_size = 0
        self.steps: dict[tuple[int, float, int, int], float] = {}

    def decode_run(self, batch: int, ctx0: int, k: int) -> np.ndarray:
        """Seconds of ``k`` decode-only iterations of ``batch`` sequences whose
        contexts total ``ctx0`` tokens in the first and grow by ``batch`` each time."""
        last = ctx0 + batch * (k - 1)
        table = self.tables.get(batch)
        if table is None or table.size <= last:
            table = self._grow(batch, table, last)
        if table is not None:
            return table[ctx0 : last + 1 : batch]
        ctx = ctx0 + batch * np.arange(k, dtype=np.float64)
        return self.model.iteration_s(np.zeros(k), np.zeros(k), np.full(k, float(batch)), ctx)

    def _grow(self, batch: int, table: np.ndarray | None, last: int) -> np.ndarray | None:
        """The table of ``batch`` extended past context ``last`` (None: over the bound)."""
        old = 0 if table is None else table.size
        size = max(2 * old, last + 1, 1024)
        if self.table_size + size - old > self.TABLE_LIMIT:
            return None
        n = size - old
        ctx = np.arange(old, size, dtype=np.float64)
        more = self.model.iteration_s(np.zeros(n), np.zeros(n), np.full(n, float(batch)), ctx)
        table = (
            np.asarray(more, dtype=np.float64) if table is None else np.concatenate([table, more])
        )
        self.tables[batch] = table
        self.table_size += n
        return table

    def step(self, prefill_tokens: int, prefill_attn: float, batch: int, ctx: int) -> float:
        """Seconds of one iteration: prefill tokens, prefill attention pairs, decoding
        sequences and their total context in tokens."""
        if prefill_tokens == 0 and batch > 0:
            return float(self.decode_run(batch, ctx, 1)[0])
        key = (prefill_tokens, prefill_attn, batch, ctx)
        seconds = self.steps.get(key)
        if seconds is None:
            # Python floats, not 1-element arrays: the cost models evaluate numbers
            # in plain floats (the same doubles), several times faster.
            iteration_s: Callable[..., np.ndarray] = self.model.iteration_s
            seconds = float(
                iteration_s(float(prefill_tokens), float(prefill_attn), float(batch), float(ctx))
            )
            if len(self.steps) < self.STEP_LIMIT:
                self.steps[key] = seconds
        return seconds


class Engine:
    """Simulates one replica over a whole workload; see the module docstring."""

    def __init__(self, config: EngineConfig, cost: CostModel, *, fast: bool = True) -> None:
        self.cfg = config
        self.cost = cost
        self.fast = fast
        self._costs: _Costs | None = None

    def _cached_costs(self) -> _Costs:
        """The memoised costs of ``self.cost``, shared by the live engines made from
        this engine (a fleet makes one engine per run); renewed if ``cost`` is
        replaced."""
        if self._costs is None or self._costs.model is not self.cost:
            self._costs = _Costs(self.cost)
        return self._costs

    def run(
        self,
        arrival_s: Sequence[float] | np.ndarray,
        input_tokens: Sequence[int] | np.ndarray,
        output_tokens: Sequence[int] | np.ndarray,
        predicted_output: Sequence[int] | np.ndarray | None = None,
    ) -> SimResult:
        """Simulate requests arriving at ``arrival_s`` (sorted, seconds) with these
        lengths (output lengths below 1 count as 1); returns every request's fate."""
        self._costs = None  # a fresh memo: the cost model may have changed in place
        return _Run(self, arrival_s, input_tokens, output_tokens, predicted_output).go()


def _blocks(tokens: int, size: int) -> int:
    return -(-tokens // size)


def _need(decode: list[_Req], j: int, size: int) -> int:
    """Blocks the decode batch needs beyond those it holds once iteration ``j``
    (1-based) of a run has its tokens: ``kv + j`` each (the first is reserved)."""
    return sum(max(0, -(-(r.kv + j) // size) - r.blocks) for r in decode)


class _Run:
    def __init__(
        self,
        engine: Engine,
        arrival_s: Sequence[float] | np.ndarray,
        input_tokens: Sequence[int] | np.ndarray,
        output_tokens: Sequence[int] | np.ndarray,
        predicted: Sequence[int] | np.ndarray | None,
    ) -> None:
        self.cfg = engine.cfg
        self.costs = engine._cached_costs()
        self.fast = engine.fast
        arrivals = np.asarray(arrival_s, dtype=np.float64)
        prompts = np.maximum(np.asarray(input_tokens, dtype=np.int64), 1)
        outputs = np.maximum(np.asarray(output_tokens, dtype=np.int64), 1)
        if arrivals.size and np.any(np.diff(arrivals) < 0):
            raise ValueError("arrival_s must be sorted")
        n = arrivals.size
        self.n = n
        key_source = {
            "input": prompts,
            "output": outputs,
            "total": prompts + outputs,
            "predicted": np.asarray(predicted if predicted is not None else outputs),
        }[self.cfg.key].astype(np.float64)
        sign = -1.0 if self.cfg.scheduler == "lrf" else 1.0
        self.reqs = [
            _Req(
                i, float(arrivals[i]), int(prompts[i]), int(outputs[i]), sign * float(key_source[i])
            )
            for i in range(n)
        ]
        for r in self.reqs:
            r.target = r.prompt
        self.next_arrival = 0
        self.waiting: list[tuple[float, float, int]] = []  # heap of (key, arrival, rid)
        self.waiting_count = 0
        self.deadlines: list[tuple[float, int]] = []  # heap of (deadline, rid)
        self.running: list[_Req] = []
        self.free = self.cfg.num_blocks
        self.outcome = np.full(n, PENDING, dtype=np.int8)
        self.first = np.full(n, np.nan)
        self.end = np.full(n, np.nan)
        self.iter_end: list[np.ndarray] = []
        self.iter_count = 0
        self.telemetry: list[tuple[float, ...]] = []
        self.preempted_total = 0
        self.in_queue = np.zeros(n, dtype=bool)
        self.listener: Listener | None = None
        #: Whether the listener hears of every token (a fleet reads them from the
        #: spans afterwards instead).
        self.tell = True
        #: A live run (:class:`OnlineEngine`): closed-form runs wait in ``pending``
        #: and end at every known arrival and deadline (see the module docstring).
        self.live = False
        self.pending: _Pending | None = None

    def _settle(self, rid: int, code: int, when: float) -> None:
        """Request ``rid`` ended with outcome ``code`` at ``when`` (seconds)."""
        self.outcome[rid] = code
        self.end[rid] = when
        if self.listener is not None:
            self.listener(rid, code, when)

    # -- queue -------------------------------------------------------------

    def _priority(self, r: _Req) -> float:
        if self.cfg.scheduler == "fcfs":
            return r.arrival
        return r.key

    def _push(self, r: _Req) -> None:
        heapq.heappush(self.waiting, (self._priority(r), r.arrival, r.rid))
        self.in_queue[r.rid] = True
        self.waiting_count += 1

    def _peek(self, now: float) -> _Req | None:
        if self.cfg.aging > 0 and self.cfg.scheduler != "fcfs" and self.waiting:
            return self._aged_best(now)
        while self.waiting:
            rid = self.waiting[0][2]
            if self.in_queue[rid]:
                return self.reqs[rid]
            heapq.heappop(self.waiting)
        return None

    def _aged_best(self, now: float) -> _Req | None:
        """With aging, priorities change with time: pick the best by a scan."""
        best: _Req | None = None
        best_key = math.inf
        live = [e for e in self.waiting if self.in_queue[e[2]]]
        self.waiting = live
        heapq.heapify(self.waiting)
        for _, arrival, rid in live:
            r = self.reqs[rid]
            k = r.key - self.cfg.aging * (now - arrival)
            if k < best_key or (k == best_key and best is not None and arrival < best.arrival):
                best, best_key = r, k
        return best

    def _take(self, r: _Req) -> None:
        self.in_queue[r.rid] = False
        self.waiting_count -= 1

    def _expire(self, until: float) -> None:
        """Waiting requests whose queue deadline is at or before ``until`` fail then."""
        while self.deadlines and self.deadlines[0][0] <= until:
            deadline, rid = heapq.heappop(self.deadlines)
            if self.in_queue[rid] and self.reqs[rid].generated == 0:
                self._take(self.reqs[rid])
                self._settle(rid, TIMED_OUT, deadline)

    def _never_fits(self, r: _Req) -> bool:
        cfg = self.cfg
        if _blocks(r.prompt + r.output - 1, cfg.block_size) > cfg.num_blocks:
            return True
        return not cfg.chunked_prefill and not r.transferred and r.prompt > cfg.max_batched_tokens

    def _intake(self, t: float) -> None:
        cap = self.cfg.queue_cap
        timeout = self.cfg.queue_timeout_s
        while self.next_arrival < self.n and self.reqs[self.next_arrival].arrival <= t:
            r = self.reqs[self.next_arrival]
            self.next_arrival += 1
            self._expire(r.arrival)
            if (cap is not None and self.waiting_count >= cap) or self._never_fits(r):
                self._settle(r.rid, REJECTED, r.arrival)
                continue
            self._push(r)
            if timeout is not None:
                heapq.heappush(self.deadlines, (r.arrival + timeout, r.rid))
        if self.deadlines and self.deadlines[0][0] <= t:
            self._expire(t)

    # -- one step ----------------------------------------------------------

    def go(self) -> SimResult:
        t = 0.0
        while True:
            self._intake(t)
            if not self.running and not self.waiting_count:
                if self.next_arrival >= self.n:
                    break
                t = max(t, self.reqs[self.next_arrival].arrival)
                continue
            t = self._step(t)
        iter_end = np.concatenate(self.iter_end) if self.iter_end else np.empty(0)
        return SimResult(
            outcome=self.outcome,
            first=self.first,
            end=self.end,
            preemptions=np.array([r.preemptions for r in self.reqs], dtype=np.int32),
            spans=[r.spans for r in self.reqs],
            iter_end=iter_end,
            telemetry=np.array(self.telemetry, dtype=np.float64).reshape(
                -1, len(TELEMETRY_COLUMNS)
            ),
            iterations=self.iter_count,
        )

    def _grow(self, r: _Req, tokens: int) -> bool:
        """Reserve blocks for ``tokens`` more KV tokens of ``r``; False if not free."""
        need = _blocks(r.kv + tokens, self.cfg.block_size) - r.blocks
        if need > self.free:
            return False
        self.free -= need
        r.blocks += need
        return True

    def _preempt(self, r: _Req) -> float:
        """Evict ``r`` (already removed from running); returns swap-out seconds."""
        r.preemptions += 1
        self.preempted_total += 1
        self.free += r.blocks
        r.blocks = 0
        cost = 0.0
        if self.cfg.preemption == "swap":
            r.swapped = r.kv
            cost = r.kv * self.cfg.kv_bytes_per_token / self.cfg.swap_bandwidth
        else:
            r.target = r.prompt + r.generated
        r.kv = 0
        self._push(r)
        return cost

    def _step(self, t: float) -> float:
        cfg = self.cfg
        budget = cfg.max_batched_tokens
        decode: list[_Req] = []
        prefill: list[tuple[_Req, int]] = []
        extra = 0.0
        preempted = False
        # A request swapped in on this step without a token this iteration (its KV
        # came back, or arrived from a prefill instance, at no cost to the step).
        idle_in = False
        i = 0
        while i < len(self.running):
            r = self.running[i]
            remaining = r.target - r.kv
            tokens = min(remaining, budget) if remaining > 0 else (1 if budget > 0 else 0)
            if tokens == 0:
                i += 1
                continue
            while not self._grow(r, tokens):
                victim = self.running.pop()
                extra += self._preempt(victim)
                preempted = True
                if victim is r:
                    break
            else:
                budget -= tokens
                if remaining > 0:
                    prefill.append((r, tokens))
                else:
                    decode.append(r)
                i += 1
                continue
            # r itself was evicted; it is gone from running
        if not preempted:
            while len(self.running) < cfg.max_num_seqs and budget > 0:
                r_opt = self._peek(t)
                if r_opt is None:
                    break
                r = r_opt
                if r.swapped:
                    need = r.swapped
                    if _blocks(need, cfg.block_size) > self.free:
                        break
                    self._take(r)
                    r.kv = 0
                    self._grow(r, need)
                    r.kv = need
                    if not r.transferred:
                        extra += need * cfg.kv_bytes_per_token / cfg.swap_bandwidth
                    r.swapped = 0
                    r.transferred = False
                    self.running.append(r)
                    if budget >= 1 and r.target <= r.kv and self._grow(r, 1):
                        budget -= 1
                        decode.append(r)
                    else:
                        idle_in = True  # it takes part from the next iteration on
                    continue
                remaining = r.target - r.kv
                chunk = min(remaining, budget)
                if not cfg.chunked_prefill and chunk < remaining:
                    break
                if _blocks(r.kv + chunk, cfg.block_size) - r.blocks > self.free:
                    break
                self._take(r)
                self._grow(r, chunk)
                budget -= chunk
                self.running.append(r)
                prefill.append((r, chunk))
        if not decode and not prefill:
            if extra > 0:
                return t + extra
            # Nothing fits: without chunked prefill, a request recomputing after a
            # preemption can need more than the budget. It can never run: fail it.
            r_opt = self._peek(t)
            if r_opt is not None:
                self._take(r_opt)
                self._settle(r_opt.rid, REJECTED, t)
            return t
        aging = self.cfg.aging > 0 and self.waiting_count > 0
        fixed = not prefill and not preempted and not idle_in and extra == 0.0 and not aging
        if self.fast and fixed:
            k = self._run_length(decode)
            if k > 1:
                run = self._plan(t, decode, k)
                if self.live and run.ends.size > 1:
                    self.pending = run  # applied by OnlineEngine.advance
                    return t
                return self._commit(run)
        return self._finish_step(t, decode, prefill, extra)

    def _finish_step(
        self, t: float, decode: list[_Req], prefill: list[tuple[_Req, int]], extra: float
    ) -> float:
        p_tokens = sum(c for _, c in prefill)
        p_attn = sum(c * (r.kv + (c + 1) / 2) for r, c in prefill)
        d_ctx = sum(r.kv for r in decode)
        dt = self.costs.step(p_tokens, p_attn, len(decode), d_ctx)
        end = t + dt + extra
        idx = self.iter_count
        self.iter_end.append(np.array([end]))
        self.iter_count += 1
        tell = self.listener if self.tell else None
        for r in decode:
            r.kv += 1
            if tell is not None:
                tell(r.rid, TOKEN, end)
            self._emit(r, idx, idx + 1, end, end)
        for r, chunk in prefill:
            r.kv += chunk
            if r.kv >= r.target:
                if tell is not None:
                    tell(r.rid, TOKEN, end)
                self._emit(r, idx, idx + 1, end, end)
        self._telemetry(t, end, 1, len(decode) + len(prefill), p_tokens)
        return end

    def _emit(self, r: _Req, a: int, b: int, first: float, end: float) -> None:
        """``r`` emitted tokens in iterations ``a..b-1``, the first at ``first`` and
        the last at ``end`` (seconds); the listener has already heard of them."""
        if r.spans and r.spans[-1][1] == a:
            r.spans[-1] = (r.spans[-1][0], b)
        else:
            r.spans.append((a, b))
        if r.generated == 0:
            self.first[r.rid] = first
        r.generated += b - a
        if r.generated >= r.output:
            self.free += r.blocks
            r.blocks = 0
            self.running.remove(r)
            self._settle(r.rid, OK, end)

    def _run_length(self, decode: list[_Req]) -> int:
        """How many iterations the current decode-only batch can run unchanged
        (upper bound before arrivals, which :meth:`_plan` checks)."""
        k = min(r.output - r.generated for r in decode)
        if k <= 1:
            return k
        # block growth: the j-th further token of a request with kv c and b blocks
        # needs ceil((c + j) / size) - b new blocks; find the largest k that fits.
        # This step's token is already reserved; iteration j (1-based) adds j tokens
        # in all. Most runs fit whole (checked in plain Python: batches are small).
        size = self.cfg.block_size
        if _need(decode, k, size) <= self.free:
            return k
        kv = np.array([r.kv for r in decode], dtype=np.int64)
        held = np.array([r.blocks for r in decode], dtype=np.int64)

        def need(j: int) -> int:
            return int(np.maximum(-(-(kv + j) // size) - held, 0).sum())

        lo, hi = 1, k  # need(lo) fits (reserved), need(hi) does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if need(mid) <= self.free:
                lo = mid
            else:
                hi = mid
        return lo

    def _plan(self, t: float, decode: list[_Req], k: int) -> _Pending:
        """The run of at most ``k`` decode iterations from ``t``: one vectorised
        cost-model call, ends by cumulative sum, cut where the batch may change."""
        batch = len(decode)
        ctx0 = sum(r.kv for r in decode)
        ends = t + self.costs.decode_run(batch, ctx0, k).cumsum()
        # Below max_num_seqs (always, in a live run), an arrival (which may be
        # admitted) or a queue deadline (which may unblock the queue's head) cuts the
        # run at the first iteration boundary at or after it.
        if self.live or len(self.running) < self.cfg.max_num_seqs:
            soon = math.inf
            if self.next_arrival < self.n:
                soon = self.reqs[self.next_arrival].arrival
            if self.deadlines:
                soon = min(soon, self.deadlines[0][0])
            if soon < math.inf:
                cut = int(ends.searchsorted(soon, side="left")) + 1
                ends = ends[: max(1, min(k, cut))]
        return _Pending(t, decode, ends)

    def _tell(self, run: _Pending, upto: int) -> None:
        """The listener hears of the tokens of the run's iterations before ``upto``."""
        listener = self.listener
        if listener is not None and self.tell:
            for when in run.ends[run.told : upto].tolist():
                for r in run.decode:
                    listener(r.rid, TOKEN, when)
        run.told = max(run.told, upto)

    def _commit(self, run: _Pending) -> float:
        """Apply a whole run (blocks, tokens, completions, telemetry); its end."""
        decode, ends = run.decode, run.ends
        k = ends.size
        if self.listener is not None:
            self._tell(run, k)
        idx = self.iter_count
        self.iter_end.append(ends)
        self.iter_count += k
        end = float(ends[-1])
        first = float(ends[0])
        for r in decode:
            # Blocks for every token of the run (the first was reserved by the step;
            # the run's length was chosen so that they are free).
            self._grow(r, k)
            r.kv += k
            self._emit(r, idx, idx + k, first, end)
        if k > 1:
            # What stepping would have taken in by the last iteration's start, so that
            # the row's queue length is the same (outcomes do not depend on it).
            self._intake(float(ends[-2]))
        self._telemetry(run.t, end, k, len(decode), 0)
        return end

    def _telemetry(
        self, start: float, end: float, iterations: int, batch: int, prefill: int
    ) -> None:
        self.telemetry.append(
            (
                start,
                end,
                iterations,
                batch,
                prefill,
                len(self.running),
                self.waiting_count,
                self.cfg.num_blocks - self.free,
                self.preempted_total,
            )
        )


class OnlineEngine:
    """The engine fed one request at a time, as requests arrive (a live server).

    Time is simulated seconds, supplied by the caller. :meth:`add` enters a
    request arriving at ``now``; :meth:`advance` runs every iteration that starts
    at or before ``now`` (the last one may end later: its tokens are announced
    ahead of their time, which is how a server can stream them on time) and
    returns the next iteration boundary, or None when idle. Scheduling is the
    same as :meth:`Engine.run`; with ``engine.fast``, decode runs are closed-form
    (see the module docstring) and the listener still hears of every token.

    ``tokens=False``: the listener hears only of requests' ends; token times are
    read afterwards from ``run`` (spans into ``run.iter_end``), which spares a
    call per token. ``due`` is the earliest ``now`` at which :meth:`advance` can
    change anything but token announcements and :meth:`free_blocks` (-inf after
    :meth:`add`, inf when idle): a caller that needs no announcements may skip
    calls before it.
    """

    def __init__(self, engine: Engine, listener: Listener, *, tokens: bool = True) -> None:
        self.run = _Run(engine, [], [], [], None)
        self.run.listener = listener
        self.run.tell = tokens
        self.run.live = True
        self.t = 0.0
        self.now = 0.0
        self.due = -math.inf

    def add(
        self,
        now: float,
        input_tokens: int,
        output_tokens: int,
        key: float | None = None,
        *,
        kv_ready: bool = False,
    ) -> int:
        """Enter a request arriving at ``now`` (not before the previous one); its id.

        ``kv_ready``: the prompt's KV cache and first token come from a prefill
        instance (disaggregated serving): the request needs blocks for its prompt
        but no prefill, and decodes its remaining ``output_tokens - 1`` tokens.
        """
        run = self.run
        rid = run.n
        if rid == run.outcome.size:
            grow = max(64, 2 * rid)
            run.outcome = np.concatenate([run.outcome, np.full(grow, PENDING, dtype=np.int8)])
            run.first = np.concatenate([run.first, np.full(grow, np.nan)])
            run.end = np.concatenate([run.end, np.full(grow, np.nan)])
            run.in_queue = np.concatenate([run.in_queue, np.zeros(grow, dtype=bool)])
        prompt, output = max(int(input_tokens), 1), max(int(output_tokens), 1)
        by = run.cfg.key
        if by == "input":
            sort_key: float = prompt
        elif by == "total":
            sort_key = prompt + output
        elif by == "predicted" and key is not None:
            sort_key = key
        else:  # the output length, or no prediction given
            sort_key = output
        sign = -1.0 if run.cfg.scheduler == "lrf" else 1.0
        arrival = max(now, run.reqs[-1].arrival if run.reqs else now)
        r = _Req(rid, arrival, prompt, output, sign * float(sort_key))
        r.target = prompt
        if kv_ready:
            r.swapped, r.transferred, r.generated = prompt, True, 1
        run.reqs.append(r)
        run.n += 1
        pending = run.pending
        if pending is not None:
            # The run ends at the first boundary at or after the arrival, but keeps
            # every iteration that has started by ``now`` (they ran without it).
            cut = int(pending.ends.searchsorted(arrival, side="left")) + 1
            keep = max(pending.started(now), cut)
            if keep < pending.ends.size:
                pending.ends = pending.ends[:keep]
        self.due = -math.inf
        return rid

    def advance(self, now: float) -> float | None:
        """Run the iterations starting at or before ``now``; the next boundary, or None."""
        run = self.run
        self.now = max(self.now, now)
        while True:
            pending = run.pending
            if pending is not None:
                started = pending.started(now)
                if started < pending.ends.size:
                    run._tell(pending, started)
                    boundary = float(pending.ends[started - 1])
                    run._intake(boundary)  # as stepping takes in at the next boundary
                    self.due = pending.last_start()
                    return boundary
                run.pending = None
                self.t = run._commit(pending)
            run._intake(self.t)
            if not run.running and not run.waiting_count:
                if run.next_arrival < run.n:
                    self.t = max(self.t, run.reqs[run.next_arrival].arrival)
                    continue
                self.t = max(self.t, now)
                self.due = math.inf
                return None
            if self.t > now:
                self.due = self.t
                return self.t
            self.t = run._step(self.t)

    def free_blocks(self, now: float) -> int:
        """Free KV blocks once every iteration starting at or before ``now`` has
        reserved its tokens' blocks (as stepping would hold them then)."""
        run = self.run
        pending = run.pending
        if pending is None:
            return run.free
        return run.free - _need(pending.decode, pending.started(now), run.cfg.block_size)

    def state(self) -> dict[str, float]:
        """Running and waiting requests, KV blocks in use and preemptions so far."""
        run = self.run
        return {
            "running": len(run.running),
            "waiting": run.waiting_count,
            "kv_blocks_used": run.cfg.num_blocks - self.free_blocks(self.now),
            "kv_blocks": run.cfg.num_blocks,
            "preemptions": run.preempted_total,
            "requests": run.n,
        }
