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
    """Seconds per iteration for batches described by four (broadcast) arrays."""

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


@dataclass(slots=True)
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


class Engine:
    """Simulates one replica over a whole workload; see the module docstring."""

    def __init__(self, config: EngineConfig, cost: CostModel, *, fast: bool = True) -> None:
        self.cfg = config
        self.cost = cost
        self.fast = fast

    def run(
        self,
        arrival_s: Sequence[float] | np.ndarray,
        input_tokens: Sequence[int] | np.ndarray,
        output_tokens: Sequence[int] | np.ndarray,
        predicted_output: Sequence[int] | np.ndarray | None = None,
    ) -> SimResult:
        """Simulate requests arriving at ``arrival_s`` (sorted, seconds) with these
        lengths (output lengths below 1 count as 1); returns every request's fate."""
        return _Run(self, arrival_s, input_tokens, output_tokens, predicted_output).go()


def _blocks(tokens: int, size: int) -> int:
    return -(-tokens // size)


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
        self.cost = engine.cost
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
        if self.fast and not prefill and not preempted and extra == 0.0 and not aging:
            k = self._run_length(decode)
            if k > 1:
                return self._advance(t, decode, k)
        return self._finish_step(t, decode, prefill, extra)

    def _finish_step(
        self, t: float, decode: list[_Req], prefill: list[tuple[_Req, int]], extra: float
    ) -> float:
        p_tokens = sum(c for _, c in prefill)
        p_attn = sum(c * (r.kv + (c + 1) / 2) for r, c in prefill)
        d_ctx = sum(r.kv for r in decode)
        features = np.array([[p_tokens], [p_attn], [len(decode)], [d_ctx]], dtype=np.float64)
        dt = float(self.cost.iteration_s(*features)[0])
        end = t + dt + extra
        idx = self.iter_count
        self.iter_end.append(np.array([end]))
        self.iter_count += 1
        for r in decode:
            r.kv += 1
            self._emit(r, idx, idx + 1, end, end)
        for r, chunk in prefill:
            r.kv += chunk
            if r.kv >= r.target:
                self._emit(r, idx, idx + 1, end, end)
        self._telemetry(t, end, 1, len(decode) + len(prefill), p_tokens)
        return end

    def _emit(self, r: _Req, a: int, b: int, first: float, end: float) -> None:
        """``r`` emitted tokens in iterations ``a..b-1``, the first at ``first`` and
        the last at ``end`` (seconds)."""
        if r.spans and r.spans[-1][1] == a:
            r.spans[-1] = (r.spans[-1][0], b)
        else:
            r.spans.append((a, b))
        if r.generated == 0:
            self.first[r.rid] = first
        r.generated += b - a
        if self.listener is not None:
            self.listener(r.rid, TOKEN, end)
        if r.generated >= r.output:
            self.free += r.blocks
            r.blocks = 0
            self.running.remove(r)
            self._settle(r.rid, OK, end)

    def _run_length(self, decode: list[_Req]) -> int:
        """How many iterations the current decode-only batch can run unchanged
        (upper bound before arrivals, which :meth:`_advance` checks)."""
        k = min(r.output - r.generated for r in decode)
        if k <= 1:
            return k
        # block growth: the j-th further token of a request with kv c and b blocks
        # needs ceil((c + j) / size) - b new blocks; find the largest k that fits.
        size = self.cfg.block_size
        kv = np.array([r.kv for r in decode], dtype=np.int64)
        held = np.array([r.blocks for r in decode], dtype=np.int64)

        # This step's token is already reserved; iteration j (1-based) adds j tokens in all.
        def need(j: int) -> int:
            return int(np.maximum(-(-(kv + j) // size) - held, 0).sum())

        if need(k) > self.free:
            lo, hi = 1, k  # need(lo) fits (reserved), need(hi) does not
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if need(mid) <= self.free:
                    lo = mid
                else:
                    hi = mid
            k = lo
        return k

    def _advance(self, t: float, decode: list[_Req], k: int) -> float:
        batch = len(decode)
        ctx0 = sum(r.kv for r in decode)
        ctx = ctx0 + batch * np.arange(k, dtype=np.float64)
        dt = self.cost.iteration_s(np.zeros(k), np.zeros(k), np.full(k, float(batch)), ctx)
        ends = t + np.cumsum(dt)
        # Below max_num_seqs, an arrival (which may be admitted) or a queue deadline
        # (which may unblock the queue's head) cuts the run at the first iteration
        # boundary at or after it.
        if len(self.running) < self.cfg.max_num_seqs:
            soon = math.inf
            if self.next_arrival < self.n:
                soon = self.reqs[self.next_arrival].arrival
            if self.deadlines:
                soon = min(soon, self.deadlines[0][0])
            if soon < math.inf:
                cut = int(np.searchsorted(ends, soon, side="left")) + 1
                k = max(1, min(k, cut))
                ends = ends[:k]
        # Blocks for every token of the run (the first was reserved by the step).
        for r in decode:
            self._grow(r, k)
        idx = self.iter_count
        self.iter_end.append(ends)
        self.iter_count += k
        end = float(ends[-1])
        first = float(ends[0])
        for r in decode:
            r.kv += k
            self._emit(r, idx, idx + k, first, end)
        if k > 1:
            # What stepping would have taken in by the last iteration's start, so that
            # the row's queue length is the same (outcomes do not depend on it).
            self._intake(float(ends[-2]))
        self._telemetry(t, end, k, batch, 0)
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
    same as :meth:`Engine.run`, stepping one iteration at a time.
    """

    def __init__(self, engine: Engine, listener: Listener) -> None:
        self.run = _Run(Engine(engine.cfg, engine.cost, fast=False), [], [], [], None)
        self.run.listener = listener
        self.t = 0.0

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
        sort_key = {"input": prompt, "output": output, "total": prompt + output}.get(
            run.cfg.key, output if key is None else key
        )
        sign = -1.0 if run.cfg.scheduler == "lrf" else 1.0
        arrival = max(now, run.reqs[-1].arrival if run.reqs else now)
        r = _Req(rid, arrival, prompt, output, sign * float(sort_key))
        r.target = prompt
        if kv_ready:
            r.swapped, r.transferred, r.generated = prompt, True, 1
        run.reqs.append(r)
        run.n += 1
        return rid

    def advance(self, now: float) -> float | None:
        """Run the iterations starting at or before ``now``; the next boundary, or None."""
        run = self.run
        while True:
            run._intake(self.t)
            if not run.running and not run.waiting_count:
                if run.next_arrival < run.n:
                    self.t = max(self.t, run.reqs[run.next_arrival].arrival)
                    continue
                self.t = max(self.t, now)
                return None
            if self.t > now:
                return self.t
            self.t = run._step(self.t)

    def state(self) -> dict[str, float]:
        """Running and waiting requests, KV blocks in use and preemptions so far."""
        run = self.run
        return {
            "running": len(run.running),
            "waiting": run.waiting_count,
            "kv_blocks_used": run.cfg.num_blocks - run.free,
            "kv_blocks": run.cfg.num_blocks,
            "preemptions": run.preempted_total,
            "requests": run.n,
        }
