"""A naive serving-engine simulator: the reference the fast engine is checked against.

Written from the scheduling rules stated in :mod:`burstlab.sim.engine` (its module
docstring), deliberately simple: one iteration at a time, plain lists, linear scans
for the queue, one scalar cost-model call per iteration, every token time appended
to its request as it happens. No heaps, no lazy deletion, no closed form, no
shared code with the engine beyond its config class and the cost model.

The rules, per iteration starting at ``t``:

1. Intake: in time order, requests arriving at or before ``t`` join the queue
   (rejected at their arrival if ``queue_cap`` requests already wait then, or if
   they could never run: ``prompt + output - 1`` KV tokens need more blocks than
   the cache has, ``prompt + output`` exceeds ``max_model_len``, or, without
   chunked prefill, the prompt exceeds the budget), and
   deadlines at or before ``t`` expire: before each arrival at ``a`` those at or
   before ``a`` (at equal times a deadline goes first), then those at or before
   ``t``, in order of (time, kind, id), the queue deadline before the client's.
   A request queued at ``a`` has a queue deadline ``a + queue_timeout_s`` and a
   client deadline ``a + client_timeout_s`` (each when set). A queue deadline
   fails a request waiting without having produced a token (timed out at the
   deadline); a client deadline fails a request waiting, tokens or not (preempted
   ones too: client timeout at the deadline). Each deadline fires once and does
   nothing to a request not waiting then: a request running at its queue deadline
   keeps going.
   Then every running request whose client deadline is at or before ``t`` fails
   (client timeout at its deadline, blocks freed, the others keep their order).
2. Running requests, in admission order: a prefilling one takes
   ``min(remaining prefill, budget)`` tokens, a decoding one takes one token; each
   needs ``ceil(kv / block_size)`` blocks. While the blocks are not free, the most
   recently admitted running request is preempted (recompute: re-queued to
   prefill prompt plus generated tokens; swap: its KV goes to the host, costing
   ``kv * bytes_per_token / swap_bandwidth`` seconds now and again when it comes
   back). A victim preempted more than ``max_preemptions`` times (when set) fails
   instead (preempted, at ``t``): not re-queued, and no swap time; it still counts
   as a preemption (totals, and no admission this step).
3. Admission, only if nothing was preempted: the best waiting request (FCFS:
   earliest arrival; SRF/LRF: smallest ``sign * key - aging * waited``; ties by
   arrival, then id) while fewer than ``max_num_seqs`` run and budget remains,
   if its first chunk's blocks are free (without chunked prefill: if the whole
   remaining prefill fits the budget). A swapped request comes back with its KV
   (and decodes this iteration if it was decoding and a block is free).
4. Nothing scheduled: the swap time passes (no iteration), or, if there was none,
   the best waiting request can never fit (without chunked prefill, recomputing
   more than the budget after a preemption) and is rejected at ``t``.
5. The iteration lasts ``cost.iteration_s(...) + swap seconds``; at its end,
   decoding requests first, then prefilling ones, in batch order: a request whose
   client deadline is before the end (strictly) fails at its deadline (client
   timeout: no token, its KV not grown, blocks freed); otherwise each decoding
   request and each request finishing its prefill emits a token (a token exactly
   at the client deadline is emitted), and a request with all its tokens
   completes and frees its blocks. The telemetry row is the state after this.

Outcomes are strings here (``"ok"``, ``"rejected"``, ``"timed_out"``,
``"pending"``, ``"client_timeout"``, ``"preempted"``); the test maps them onto the
engine's codes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from burstlab.sim.engine import EngineConfig


@dataclass
class NaiveRequest:
    rid: int
    arrival: float
    prompt: int
    output: int
    key: float
    target: int  # tokens to prefill before the next token
    kv: int = 0  # tokens whose KV is on the GPU
    blocks: int = 0
    generated: int = 0
    swapped: int = 0  # KV tokens in host memory
    preemptions: int = 0
    client_deadline: float = float("inf")  # arrival + client_timeout_s, if set
    outcome: str = "pending"
    end: float = float("nan")
    tokens: list[float] = field(default_factory=list)


@dataclass
class Iteration:
    """One engine iteration, and the state right after it."""

    start: float
    end: float
    batch: int
    prefill_tokens: int
    running: int
    waiting: int
    kv_blocks: int
    preemptions: int


@dataclass
class NaiveResult:
    requests: list[NaiveRequest]
    iterations: list[Iteration]


def _blocks_for(tokens: int, size: int) -> int:
    return (tokens + size - 1) // size


class NaiveEngine:
    def __init__(self, cfg: EngineConfig, cost: Any) -> None:
        self.cfg = cfg
        self.cost = cost

    def run(
        self,
        arrivals: Any,
        inputs: Any,
        outputs: Any,
        predicted: Any = None,
    ) -> NaiveResult:
        cfg = self.cfg
        reqs: list[NaiveRequest] = []
        for i in range(len(arrivals)):
            prompt = max(int(inputs[i]), 1)
            output = max(int(outputs[i]), 1)
            if cfg.key == "input":
                key = float(prompt)
            elif cfg.key == "output":
                key = float(output)
            elif cfg.key == "total":
                key = float(prompt + output)
            else:
                key = float(predicted[i] if predicted is not None else output)
            if cfg.scheduler == "lrf":
                key = -key
            reqs.append(NaiveRequest(i, float(arrivals[i]), prompt, output, key, target=prompt))
        return _Sim(cfg, self.cost, reqs).go()


class _Sim:
    def __init__(self, cfg: EngineConfig, cost: Any, reqs: list[NaiveRequest]) -> None:
        self.cfg = cfg
        self.cost = cost
        self.reqs = reqs
        self.next_arrival = 0
        self.waiting: list[NaiveRequest] = []
        self.deadlines: list[tuple[float, int, int]] = []  # (time, kind, rid) yet to fire
        self.running: list[NaiveRequest] = []
        self.free = cfg.num_blocks
        self.preempted = 0
        self.iterations: list[Iteration] = []

    def go(self) -> NaiveResult:
        t = 0.0
        while True:
            self.intake(t)
            self.client_timeouts(t)
            if not self.running and not self.waiting:
                if self.next_arrival == len(self.reqs):
                    break
                t = max(t, self.reqs[self.next_arrival].arrival)
                continue
            t = self.step(t)
        return NaiveResult(self.reqs, self.iterations)

    # -- queue -------------------------------------------------------------

    def intake(self, t: float) -> None:
        while True:
            arrival = None
            if self.next_arrival < len(self.reqs):
                r = self.reqs[self.next_arrival]
                if r.arrival <= t:
                    arrival = r
            due = [d for d in self.deadlines if d[0] <= t]
            deadline = min(due) if due else None
            if deadline is not None and (arrival is None or deadline[0] <= arrival.arrival):
                self.fire_deadline(deadline)
            elif arrival is not None:
                self.arrive(arrival)
            else:
                return

    def arrive(self, r: NaiveRequest) -> None:
        self.next_arrival += 1
        cfg = self.cfg
        full = cfg.queue_cap is not None and len(self.waiting) >= cfg.queue_cap
        too_long = (
            _blocks_for(r.prompt + r.output - 1, cfg.block_size) > cfg.num_blocks
            or (not cfg.chunked_prefill and r.prompt > cfg.max_batched_tokens)
            or (cfg.max_model_len is not None and r.prompt + r.output > cfg.max_model_len)
        )
        if full or too_long:
            r.outcome, r.end = "rejected", r.arrival
            return
        self.waiting.append(r)
        if cfg.queue_timeout_s is not None:
            self.deadlines.append((r.arrival + cfg.queue_timeout_s, 0, r.rid))
        if cfg.client_timeout_s is not None:
            r.client_deadline = r.arrival + cfg.client_timeout_s
            self.deadlines.append((r.client_deadline, 1, r.rid))

    def fire_deadline(self, deadline: tuple[float, int, int]) -> None:
        self.deadlines.remove(deadline)
        when, kind, rid = deadline
        r = self.reqs[rid]
        if r not in self.waiting:
            return
        if kind == 0 and r.generated == 0:
            self.waiting.remove(r)
            r.outcome, r.end = "timed_out", when
        elif kind == 1:
            self.waiting.remove(r)
            r.outcome, r.end = "client_timeout", when

    def client_timeouts(self, t: float) -> None:
        """Running requests whose client gave up by ``t`` fail at their deadline."""
        if self.cfg.client_timeout_s is None:
            return
        for r in list(self.running):
            if r.client_deadline <= t:
                self.give_up(r)

    def give_up(self, r: NaiveRequest) -> None:
        self.free += r.blocks
        r.blocks = 0
        self.running.remove(r)
        r.outcome, r.end = "client_timeout", r.client_deadline

    def best_waiting(self, t: float) -> NaiveRequest | None:
        best = None
        best_rank: tuple[float, float, int] | None = None
        for r in self.waiting:
            if self.cfg.scheduler == "fcfs":
                rank = (r.arrival, r.arrival, r.rid)
            else:
                rank = (r.key - self.cfg.aging * (t - r.arrival), r.arrival, r.rid)
            if best_rank is None or rank < best_rank:
                best, best_rank = r, rank
        return best

    # -- one iteration -----------------------------------------------------

    def fits(self, r: NaiveRequest, kv: int) -> bool:
        return _blocks_for(kv, self.cfg.block_size) - r.blocks <= self.free

    def reserve(self, r: NaiveRequest, kv: int) -> None:
        need = _blocks_for(kv, self.cfg.block_size) - r.blocks
        assert need <= self.free
        if need > 0:
            self.free -= need
            r.blocks += need

    def preempt(self, r: NaiveRequest, t: float) -> float:
        cfg = self.cfg
        r.preemptions += 1
        self.preempted += 1
        self.free += r.blocks
        r.blocks = 0
        if cfg.max_preemptions is not None and r.preemptions > cfg.max_preemptions:
            r.kv = 0
            r.outcome, r.end = "preempted", t
            return 0.0
        seconds = 0.0
        if cfg.preemption == "swap":
            r.swapped = r.kv
            seconds = r.kv * cfg.kv_bytes_per_token / cfg.swap_bandwidth
        else:
            r.target = r.prompt + r.generated
        r.kv = 0
        self.waiting.append(r)
        return seconds

    def step(self, t: float) -> float:
        cfg = self.cfg
        budget = cfg.max_batched_tokens
        decode: list[NaiveRequest] = []
        prefill: list[tuple[NaiveRequest, int]] = []
        swap_s = 0.0
        preempted = False

        i = 0
        while i < len(self.running):
            r = self.running[i]
            prefilling = r.kv < r.target
            # a decode step takes one token of budget; a prefill chunk what is left
            tokens = min(r.target - r.kv if prefilling else 1, budget)
            if tokens == 0:
                i += 1
                continue
            evicted_self = False
            while not self.fits(r, r.kv + tokens):
                victim = self.running.pop()
                swap_s += self.preempt(victim, t)
                preempted = True
                if victim is r:
                    evicted_self = True
                    break
            if evicted_self:
                continue
            self.reserve(r, r.kv + tokens)
            budget -= tokens
            if prefilling:
                prefill.append((r, tokens))
            else:
                decode.append(r)
            i += 1

        while not preempted and len(self.running) < cfg.max_num_seqs and budget > 0:
            r_best = self.best_waiting(t)
            if r_best is None:
                break
            r = r_best
            if r.swapped > 0:
                if not self.fits(r, r.swapped):
                    break
                self.waiting.remove(r)
                self.reserve(r, r.swapped)
                r.kv = r.swapped
                swap_s += r.swapped * cfg.kv_bytes_per_token / cfg.swap_bandwidth
                r.swapped = 0
                self.running.append(r)
                if r.kv >= r.target and self.fits(r, r.kv + 1):
                    self.reserve(r, r.kv + 1)
                    budget -= 1
                    decode.append(r)
                continue
            remaining = r.target - r.kv
            chunk = min(remaining, budget)
            if not cfg.chunked_prefill and chunk < remaining:
                break
            if not self.fits(r, r.kv + chunk):
                break
            self.waiting.remove(r)
            self.reserve(r, r.kv + chunk)
            budget -= chunk
            self.running.append(r)
            prefill.append((r, chunk))

        if not decode and not prefill:
            if swap_s > 0:
                return t + swap_s
            r_best = self.best_waiting(t)
            if r_best is not None:
                self.waiting.remove(r_best)
                r_best.outcome, r_best.end = "rejected", t
            return t

        prefill_tokens = 0
        prefill_attn = 0.0
        for r, chunk in prefill:
            prefill_tokens += chunk
            prefill_attn += chunk * (r.kv + (chunk + 1) / 2)
        decode_ctx = 0
        for r in decode:
            decode_ctx += r.kv
        seconds = float(
            self.cost.iteration_s(
                float(prefill_tokens), prefill_attn, float(len(decode)), float(decode_ctx)
            )
        )
        end = t + seconds + swap_s

        for r in decode:
            if r.client_deadline < end:
                self.give_up(r)
                continue
            r.kv += 1
            self.emit(r, end)
        for r, chunk in prefill:
            if r.client_deadline < end:
                self.give_up(r)
                continue
            r.kv += chunk
            if r.kv >= r.target:
                self.emit(r, end)
        self.iterations.append(
            Iteration(
                start=t,
                end=end,
                batch=len(decode) + len(prefill),
                prefill_tokens=prefill_tokens,
                running=len(self.running),
                waiting=len(self.waiting),
                kv_blocks=cfg.num_blocks - self.free,
                preemptions=self.preempted,
            )
        )
        return end

    def emit(self, r: NaiveRequest, when: float) -> None:
        r.tokens.append(when)
        r.generated += 1
        if r.generated >= r.output:
            self.free += r.blocks
            r.blocks = 0
            self.running.remove(r)
            r.outcome, r.end = "ok", when
