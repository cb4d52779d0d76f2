"""One scheduler step of a replica: form the batch, cost the iteration, apply it.

The rules are vLLM's (V1), one iteration at a time, after intake
(:mod:`~burstlab.sim.engine.queue`):

1. **Running first**, in admission order: a request still prefilling takes a
   chunk of ``min(remaining prefill, token budget)`` tokens (the budget is
   ``max_batched_tokens``); a decoding request takes one token. When a step
   would need more KV blocks than are free, the most recently admitted running
   request is preempted (:mod:`~burstlab.sim.engine.kv`) until the step fits.
2. **Admission**, only on a step that preempted nothing: waiting requests in the
   scheduling policy's order while fewer than ``max_num_seqs`` run, budget
   remains and their first chunk's blocks are free. Without chunked prefill a
   request is admitted only if its whole prompt fits the budget.
3. The iteration lasts ``cost.iteration_s(...)`` of its batch. At its end every
   decoding request emits a token, and a request whose prefill completes emits
   one (the first token, or the next one after a recompute); a request that has
   emitted all its output tokens completes and frees its blocks.

A decode-only batch that nothing can change goes to the fast path
(:mod:`~burstlab.sim.engine.fastpath`) instead of step 3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from burstlab.sim.engine.fastpath import commit, plan, run_length
from burstlab.sim.engine.request import Req
from burstlab.sim.engine.result import REJECTED, TOKEN

if TYPE_CHECKING:
    from burstlab.sim.engine.replica import Replica


def step(rep: Replica, t: float) -> float:
    """Schedule and run what starts at ``t`` (seconds): one iteration, a closed-form
    run, or (live) a planned run left in ``rep.pending``; the next step's time."""
    cfg = rep.cfg
    kv = rep.kv
    grow = kv.grow
    queue = rep.queue
    running = rep.running
    budget = cfg.max_batched_tokens
    decode: list[Req] = []
    prefill: list[tuple[Req, int]] = []
    extra = 0.0
    preempted = False
    # A request swapped in on this step without a token this iteration (its KV
    # came back, or arrived from a prefill instance, at no cost to the step).
    idle_in = False
    i = 0
    while i < len(running):
        r = running[i]
        remaining = r.target - r.kv
        tokens = min(remaining, budget) if remaining > 0 else (1 if budget > 0 else 0)
        if tokens == 0:
            i += 1
            continue
        while not grow(r, tokens):
            victim = running.pop()
            extra += kv.preempt(victim)
            queue.push(victim)
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
        while len(running) < cfg.max_num_seqs and budget > 0:
            r_opt = queue.peek(t)
            if r_opt is None:
                break
            r = r_opt
            if r.swapped:
                seconds = kv.swap_in(r)
                if seconds is None:
                    break
                queue.take(r)
                extra += seconds
                running.append(r)
                if budget >= 1 and r.target <= r.kv and grow(r, 1):
                    budget -= 1
                    decode.append(r)
                else:
                    idle_in = True  # it takes part from the next iteration on
                continue
            remaining = r.target - r.kv
            chunk = min(remaining, budget)
            if not cfg.chunked_prefill and chunk < remaining:
                break
            if not grow(r, chunk):
                break
            queue.take(r)
            budget -= chunk
            running.append(r)
            prefill.append((r, chunk))
    if not decode and not prefill:
        if extra > 0:
            return t + extra
        # Nothing fits: without chunked prefill, a request recomputing after a
        # preemption can need more than the budget. It can never run: fail it.
        r_opt = queue.peek(t)
        if r_opt is not None:
            queue.take(r_opt)
            rep.settle(r_opt.rid, REJECTED, t)
        return t
    aging = cfg.aging > 0 and queue.count > 0
    fixed = not prefill and not preempted and not idle_in and extra == 0.0 and not aging
    if rep.fast and fixed:
        k = run_length(rep, decode)
        if k > 1:
            run = plan(rep, t, decode, k)
            if rep.live and run.ends.size > 1:
                rep.pending = run  # applied by OnlineEngine.advance
                return t
            return commit(rep, run)
    return _iterate(rep, t, decode, prefill, extra)


def _iterate(
    rep: Replica, t: float, decode: list[Req], prefill: list[tuple[Req, int]], extra: float
) -> float:
    """Run one iteration of this batch from ``t`` (plus ``extra`` swap seconds); its end."""
    p_tokens = sum(c for _, c in prefill)
    p_attn = sum(c * (r.kv + (c + 1) / 2) for r, c in prefill)
    d_ctx = sum(r.kv for r in decode)
    dt = rep.costs.step(p_tokens, p_attn, len(decode), d_ctx)
    end = t + dt + extra
    idx = rep.iter_count
    rep.iter_end.append(np.array([end]))
    rep.iter_count += 1
    tell = rep.listener if rep.tell else None
    emit = rep.emit
    for r in decode:
        r.kv += 1
        if tell is not None:
            tell(r.rid, TOKEN, end)
        emit(r, idx, idx + 1, end, end)
    for r, chunk in prefill:
        r.kv += chunk
        if r.kv >= r.target:
            if tell is not None:
                tell(r.rid, TOKEN, end)
            emit(r, idx, idx + 1, end, end)
    rep.record(t, end, 1, len(decode) + len(prefill), p_tokens)
    return end
