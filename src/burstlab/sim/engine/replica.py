"""One replica through one simulation: its queue, batch, KV blocks, step and fast path.

:class:`Engine` runs a whole workload through it (see the package docstring).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from burstlab.sim.engine.config import EngineConfig
from burstlab.sim.engine.costs import CostMemo, CostModel
from burstlab.sim.engine.request import Req
from burstlab.sim.engine.result import (
    OK,
    PENDING,
    REJECTED,
    TELEMETRY_COLUMNS,
    TIMED_OUT,
    TOKEN,
    Listener,
    SimResult,
)


@dataclass(slots=True)
class _Pending:
    """A closed-form decode run: ``decode`` (fixed for the whole run) decodes one
    token per iteration; iteration ``j`` starts at ``t`` (``j = 0``) or ``ends[j-1]``
    and ends at ``ends[j]`` (seconds). Blocks for the first iteration's tokens are
    reserved; ``kv`` and ``blocks`` of each request stay as before the run until
    it is applied (:meth:`_Run._commit`)."""

    t: float
    decode: list[Req]
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


class Engine:
    """Simulates one replica over a whole workload; see the module docstring."""

    def __init__(self, config: EngineConfig, cost: CostModel, *, fast: bool = True) -> None:
        self.cfg = config
        self.cost = cost
        self.fast = fast
        self._costs: CostMemo | None = None

    def _cached_costs(self) -> CostMemo:
        """The memoised costs of ``self.cost``, shared by the live engines made from
        this engine (a fleet makes one engine per run); renewed if ``cost`` is
        replaced."""
        if self._costs is None or self._costs.model is not self.cost:
            self._costs = CostMemo(self.cost)
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


def _need(decode: list[Req], j: int, size: int) -> int:
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
            Req(
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
        self.running: list[Req] = []
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

    def _priority(self, r: Req) -> float:
        if self.cfg.scheduler == "fcfs":
            return r.arrival
        return r.key

    def _push(self, r: Req) -> None:
        heapq.heappush(self.waiting, (self._priority(r), r.arrival, r.rid))
        self.in_queue[r.rid] = True
        self.waiting_count += 1

    def _peek(self, now: float) -> Req | None:
        if self.cfg.aging > 0 and self.cfg.scheduler != "fcfs" and self.waiting:
            return self._aged_best(now)
        while self.waiting:
            rid = self.waiting[0][2]
            if self.in_queue[rid]:
                return self.reqs[rid]
            heapq.heappop(self.waiting)
        return None

    def _aged_best(self, now: float) -> Req | None:
        """With aging, priorities change with time: pick the best by a scan."""
        best: Req | None = None
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

    def _take(self, r: Req) -> None:
        self.in_queue[r.rid] = False
        self.waiting_count -= 1

    def _expire(self, until: float) -> None:
        """Waiting requests whose queue deadline is at or before ``until`` fail then."""
        while self.deadlines and self.deadlines[0][0] <= until:
            deadline, rid = heapq.heappop(self.deadlines)
            if self.in_queue[rid] and self.reqs[rid].generated == 0:
                self._take(self.reqs[rid])
                self._settle(rid, TIMED_OUT, deadline)

    def _never_fits(self, r: Req) -> bool:
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

    def _grow(self, r: Req, tokens: int) -> bool:
        """Reserve blocks for ``tokens`` more KV tokens of ``r``; False if not free."""
        need = _blocks(r.kv + tokens, self.cfg.block_size) - r.blocks
        if need > self.free:
            return False
        self.free -= need
        r.blocks += need
        return True

    def _preempt(self, r: Req) -> float:
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
        decode: list[Req] = []
        prefill: list[tuple[Req, int]] = []
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
        self, t: float, decode: list[Req], prefill: list[tuple[Req, int]], extra: float
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

    def _emit(self, r: Req, a: int, b: int, first: float, end: float) -> None:
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

    def _run_length(self, decode: list[Req]) -> int:
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

    def _plan(self, t: float, decode: list[Req], k: int) -> _Pending:
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
