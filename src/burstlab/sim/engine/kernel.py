"""The compiled scheduler: every iteration of one replica, in numba-compiled code.

The rules are those of :mod:`burstlab.sim.engine` (its module docstring). Each
iteration is stepped, none is skipped or taken in closed form: compiled, a step
costs tens of nanoseconds plus a few per running request, whatever the batch, the
queue or the KV pressure, so there is nothing left to gain from special cases.

The state of a replica lives in numpy arrays that :class:`~burstlab.sim.engine.
replica.Replica` owns and grows; the functions here read and write them in place.
Column and slot names are module constants. A call to :func:`advance` runs every
step that starts at or before ``until`` and returns why it stopped: idle, the next
step starts later, a buffer needs room, the cost model is Python (it gives the
iteration's four numbers and waits for the seconds), or progress is due.

Times are seconds (float64), lengths tokens, KV in blocks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from numba import njit

F = TypeVar("F", bound=Callable[..., Any])


def compiled(**options: Any) -> Callable[[F], F]:
    """numba's ``njit``, cached on disk, without its reference counting (``_nrt``):
    the kernel allocates nothing, and the atomic reference counts numba keeps on
    every array passed between functions cost several times the work itself."""
    settings: dict[str, Any] = {"cache": True, "_nrt": False, **options}
    decorate: Callable[[F], F] = njit(**settings)
    return decorate


# Per-request integer columns (``ri``).
PROMPT, OUTPUT, TARGET, KV, BLOCKS, GEN, SWAPPED, TRANSFERRED, PREEMPT, LASTSPAN, INQ, OUTCOME = (
    range(12)
)
RI_COLUMNS = 12
# Per-request float columns (``rf``).
ARRIVAL, KEY, FIRST, END, LAST, MAXGAP, ADMITTED = range(7)
RF_COLUMNS = 7

# Integer state (``s``).
(
    N,
    NEXT,
    NRUN,
    QCOUNT,
    HSIZE,
    QDSIZE,
    CDSIZE,
    FREE,
    PREEMPTIONS,
    ITER,
    NSPAN,
    NTELE,
    NEV,
    PHASE,
    NDEC,
    NPRE,
    ENDED,
    EVENTS,
    TOKENS,
    SINCE,
) = range(20)
S_SLOTS = 20
# Float state (``sf``): now, the seconds of a Python cost, the pending step's
# swap seconds and four cost arguments, the end of the last iteration.
T, COST, EXTRA, PT, PA, DS, DC, LAST_END = range(8)
SF_SLOTS = 8

# Integer config (``ci``); -1 means no limit.
(
    MAX_SEQS,
    BUDGET,
    CHUNKED,
    BLOCK,
    NUM_BLOCKS,
    RECOMPUTE,
    POLICY,
    CAP,
    MAX_PROMPT,
    MAX_PREEMPT,
    MAX_LEN,
) = range(11)
CI_SLOTS = 11
# Float config (``cf``); inf means none.
BYTES_PER_TOKEN, BANDWIDTH, AGING, QUEUE_TIMEOUT, CLIENT_TIMEOUT = range(5)
CF_SLOTS = 5

# Cost model kinds (``ck``): a Python object called between kernel calls, or one
# of the two models the kernel evaluates itself (same operations, same doubles).
COST_PYTHON, COST_LINEAR, COST_ROOFLINE = 0, 1, 2

# Telemetry row (``tele``): the 9 telemetry columns then the 3 load columns.
TELE_COLUMNS = 12

# Why :func:`advance` returned; plus HEARD when listener events wait in ``ev``.
IDLE, BOUNDARY, NEED_COST, GROW, PROGRESS = 0, 1, 2, 3, 4
HEARD = 8
#: Steps between PROGRESS returns when progress is asked for.
PROGRESS_STEPS = 1 << 18

# Outcome and event codes (as :mod:`~burstlab.sim.engine.result`).
OK, REJECTED, TIMED_OUT, PENDING, CLIENT_TIMEOUT, PREEMPTED = 0, 1, 2, 3, 4, 5
TOKEN = -1


@compiled(inline="always")
def _max(a: float, b: float) -> float:
    """``np.maximum`` on two floats, bit for bit (``b`` on a tie, NaN wins)."""
    return a if a > b or math.isnan(a) else b


@compiled()
def iteration_cost(ck: int, cp: np.ndarray, pt: float, pa: float, ds: float, dc: float) -> float:
    """Seconds of one iteration for the compiled cost kinds (see
    :func:`~burstlab.sim.engine.costs.compile_cost` for ``cp``)."""
    if ck == COST_LINEAR:
        return cp[0] + cp[1] * pt + cp[2] * pa + cp[3] * ds + cp[4] * dc
    overhead, s_gemm, s_weights, s_pair, s_kv = cp[0], cp[1], cp[2], cp[3], cp[4]
    ar_fixed, s_ar, layers, kernel_floor, attn_seq, q_tile = (
        cp[5],
        cp[6],
        cp[7],
        cp[8],
        cp[9],
        cp[10],
    )
    tokens = pt + ds
    linear = _max(tokens * s_gemm, s_weights)
    pairs = pa + dc + ds
    kv_tokens = dc + ds + pa / q_tile + pt + ds
    floor = kernel_floor * (1.0 if pairs > 0 else 0.0)
    work = _max(_max(pairs * s_pair, kv_tokens * s_kv), ds * attn_seq)
    total = overhead + linear + layers * _max(work, floor)
    if ar_fixed != 0.0:
        total = total + ar_fixed + tokens * s_ar
    return total


# --- heaps of (k1, k2, id) rows, smallest first, lexicographic ------------------


@compiled(inline="always")
def _less(h: np.ndarray, i: int, j: int) -> bool:
    if h[i, 0] != h[j, 0]:
        return h[i, 0] < h[j, 0]
    if h[i, 1] != h[j, 1]:
        return h[i, 1] < h[j, 1]
    return h[i, 2] < h[j, 2]


@compiled()
def _swap(h: np.ndarray, i: int, j: int) -> None:
    for c in range(3):
        h[i, c], h[j, c] = h[j, c], h[i, c]


@compiled()
def heap_push(h: np.ndarray, size: int, k1: float, k2: float, rid: int) -> int:
    """Push a row; the new size (the caller made room)."""
    i = size
    h[i, 0], h[i, 1], h[i, 2] = k1, k2, float(rid)
    while i > 0:
        parent = (i - 1) >> 1
        if _less(h, i, parent):
            _swap(h, i, parent)
            i = parent
        else:
            break
    return size + 1


@compiled()
def _sift_down(h: np.ndarray, size: int, i: int) -> None:
    while True:
        left = 2 * i + 1
        if left >= size:
            return
        best = left
        right = left + 1
        if right < size and _less(h, right, left):
            best = right
        if _less(h, best, i):
            _swap(h, i, best)
            i = best
        else:
            return


@compiled()
def heap_pop(h: np.ndarray, size: int) -> int:
    """Remove the smallest row; the new size."""
    size -= 1
    if size > 0:
        for c in range(3):
            h[0, c] = h[size, c]
        _sift_down(h, size, 0)
    return size


@compiled()
def _compact(h: np.ndarray, size: int, ri: np.ndarray) -> int:
    """Drop rows of requests no longer waiting and re-heapify; the new size."""
    kept = 0
    for i in range(size):
        if ri[int(h[i, 2]), INQ] == 1:
            for c in range(3):
                h[kept, c] = h[i, c]
            kept += 1
    for i in range(kept // 2 - 1, -1, -1):
        _sift_down(h, kept, i)
    return kept


# --- the waiting queue ----------------------------------------------------------


@compiled(inline="always")
def _settle(
    ri: np.ndarray, rf: np.ndarray, s: np.ndarray, ev: np.ndarray, rid: int, code: int, when: float
) -> None:
    """Request ``rid`` ended with ``code`` at ``when``."""
    ri[rid, OUTCOME] = code
    rf[rid, END] = when
    s[ENDED] += 1
    if s[EVENTS] > 0:
        e = s[NEV]
        ev[e, 0], ev[e, 1], ev[e, 2] = float(rid), float(code), when
        s[NEV] = e + 1


@compiled()
def _push(
    ri: np.ndarray, rf: np.ndarray, s: np.ndarray, ci: np.ndarray, hq: np.ndarray, rid: int
) -> None:
    """``rid`` waits (on arrival, or again after a preemption)."""
    if s[HSIZE] == hq.shape[0]:
        s[HSIZE] = _compact(hq, s[HSIZE], ri)
    priority = rf[rid, ARRIVAL] if ci[POLICY] == 0 else rf[rid, KEY]
    s[HSIZE] = heap_push(hq, s[HSIZE], priority, rf[rid, ARRIVAL], rid)
    ri[rid, INQ] = 1
    s[QCOUNT] += 1


@compiled(inline="always")
def _take(ri: np.ndarray, s: np.ndarray, rid: int) -> None:
    ri[rid, INQ] = 0
    s[QCOUNT] -= 1


@compiled(inline="always")
def _peek(
    ri: np.ndarray,
    rf: np.ndarray,
    s: np.ndarray,
    ci: np.ndarray,
    cf: np.ndarray,
    hq: np.ndarray,
    now: float,
) -> int:
    """The waiting request to admit next at ``now`` (-1 if none): the heap's first,
    or, with aging, the smallest ``key - aging * waited`` (ties: arrival, then id)."""
    if ci[POLICY] != 0 and cf[AGING] > 0 and s[HSIZE] > 0:
        s[HSIZE] = _compact(hq, s[HSIZE], ri)
        best = -1
        best_key = math.inf
        best_arrival = math.inf
        aging = cf[AGING]
        for i in range(s[HSIZE]):
            rid = int(hq[i, 2])
            arrival = rf[rid, ARRIVAL]
            k = rf[rid, KEY] - aging * (now - arrival)
            if (
                k < best_key
                or (k == best_key and arrival < best_arrival)
                or (k == best_key and arrival == best_arrival and rid < best)
            ):
                best, best_key, best_arrival = rid, k, arrival
        return best
    while s[HSIZE] > 0:
        rid = int(hq[0, 2])
        if ri[rid, INQ] == 1:
            return rid
        s[HSIZE] = heap_pop(hq, s[HSIZE])
    return -1


@compiled(inline="always")
def _expire(
    ri: np.ndarray,
    rf: np.ndarray,
    s: np.ndarray,
    ev: np.ndarray,
    hd0: np.ndarray,
    hd1: np.ndarray,
    until: float,
) -> None:
    """Deadlines at or before ``until``, in order of (time, queue before client, id):
    a queue deadline fails a request still waiting without a token (TIMED_OUT), a
    client deadline one still waiting (CLIENT_TIMEOUT); each fires once."""
    while True:
        q = s[QDSIZE] > 0 and hd0[0, 0] <= until
        c = s[CDSIZE] > 0 and hd1[0, 0] <= until
        if not q and not c:
            return
        if q and (not c or hd0[0, 0] <= hd1[0, 0]):
            deadline, rid = hd0[0, 0], int(hd0[0, 2])
            s[QDSIZE] = heap_pop(hd0, s[QDSIZE])
            if ri[rid, INQ] == 1 and ri[rid, GEN] == 0:
                _take(ri, s, rid)
                _settle(ri, rf, s, ev, rid, TIMED_OUT, deadline)
        else:
            deadline, rid = hd1[0, 0], int(hd1[0, 2])
            s[CDSIZE] = heap_pop(hd1, s[CDSIZE])
            if ri[rid, INQ] == 1:
                _take(ri, s, rid)
                _settle(ri, rf, s, ev, rid, CLIENT_TIMEOUT, deadline)


@compiled()
def _never_fits(ri: np.ndarray, ci: np.ndarray, rid: int) -> bool:
    block = ci[BLOCK]
    if (ri[rid, PROMPT] + ri[rid, OUTPUT] - 1 + block - 1) // block > ci[NUM_BLOCKS]:
        return True
    if ci[MAX_LEN] >= 0 and ri[rid, PROMPT] + ri[rid, OUTPUT] > ci[MAX_LEN]:
        return True
    return ci[MAX_PROMPT] >= 0 and ri[rid, TRANSFERRED] == 0 and ri[rid, PROMPT] > ci[MAX_PROMPT]


@compiled(inline="always")
def _intake(
    ri: np.ndarray,
    rf: np.ndarray,
    s: np.ndarray,
    ci: np.ndarray,
    cf: np.ndarray,
    ev: np.ndarray,
    hq: np.ndarray,
    hd0: np.ndarray,
    hd1: np.ndarray,
    t: float,
) -> None:
    """Arrivals up to ``t`` wait or are rejected (deadlines up to each arrival
    first); then the deadlines up to ``t``."""
    while s[NEXT] < s[N] and rf[s[NEXT], ARRIVAL] <= t:
        rid = s[NEXT]
        s[NEXT] = rid + 1
        arrival = rf[rid, ARRIVAL]
        _expire(ri, rf, s, ev, hd0, hd1, arrival)
        cap = ci[CAP]
        if (cap >= 0 and s[QCOUNT] >= cap) or _never_fits(ri, ci, rid):
            _settle(ri, rf, s, ev, rid, REJECTED, arrival)
            continue
        _push(ri, rf, s, ci, hq, rid)
        if cf[QUEUE_TIMEOUT] < math.inf:
            s[QDSIZE] = heap_push(hd0, s[QDSIZE], arrival + cf[QUEUE_TIMEOUT], 0.0, rid)
        if cf[CLIENT_TIMEOUT] < math.inf:
            s[CDSIZE] = heap_push(hd1, s[CDSIZE], arrival + cf[CLIENT_TIMEOUT], 0.0, rid)
    _expire(ri, rf, s, ev, hd0, hd1, t)


# --- KV blocks and the running batch ---------------------------------------------


@compiled(inline="always")
def _grow(ri: np.ndarray, s: np.ndarray, ci: np.ndarray, rid: int, tokens: int) -> bool:
    """Reserve blocks for ``tokens`` more KV tokens of ``rid``; False if not free."""
    block = ci[BLOCK]
    need = (ri[rid, KV] + tokens + block - 1) // block - ri[rid, BLOCKS]
    if need > s[FREE]:
        return False
    s[FREE] -= need
    ri[rid, BLOCKS] += need
    return True


@compiled(inline="always")
def _release(ri: np.ndarray, s: np.ndarray, rid: int) -> None:
    s[FREE] += ri[rid, BLOCKS]
    ri[rid, BLOCKS] = 0


@compiled(inline="always")
def _unrun(s: np.ndarray, rb: np.ndarray, rid: int) -> None:
    """Take ``rid`` off the running list, the others keeping their order."""
    n = s[NRUN]
    j = 0
    while rb[0, j] != rid:
        j += 1
    for k in range(j, n - 1):
        rb[0, k] = rb[0, k + 1]
    s[NRUN] = n - 1


@compiled()
def _abort(
    ri: np.ndarray,
    rf: np.ndarray,
    s: np.ndarray,
    cf: np.ndarray,
    ev: np.ndarray,
    rb: np.ndarray,
    rid: int,
) -> None:
    """The client gave up on running ``rid`` at its deadline."""
    _release(ri, s, rid)
    _unrun(s, rb, rid)
    _settle(ri, rf, s, ev, rid, CLIENT_TIMEOUT, rf[rid, ARRIVAL] + cf[CLIENT_TIMEOUT])


@compiled()
def _preempt(
    ri: np.ndarray,
    rf: np.ndarray,
    s: np.ndarray,
    ci: np.ndarray,
    cf: np.ndarray,
    ev: np.ndarray,
    hq: np.ndarray,
    rid: int,
    t: float,
) -> float:
    """Evict ``rid`` (already off the running list): re-queued, or failed past the
    preemption limit; the seconds its swap-out takes."""
    ri[rid, PREEMPT] += 1
    s[PREEMPTIONS] += 1
    _release(ri, s, rid)
    kv = ri[rid, KV]
    ri[rid, KV] = 0
    if ci[MAX_PREEMPT] >= 0 and ri[rid, PREEMPT] > ci[MAX_PREEMPT]:
        _settle(ri, rf, s, ev, rid, PREEMPTED, t)
        return 0.0
    cost = 0.0
    if ci[RECOMPUTE] == 1:
        ri[rid, TARGET] = ri[rid, PROMPT] + ri[rid, GEN]
    else:
        ri[rid, SWAPPED] = kv
        cost = kv * cf[BYTES_PER_TOKEN] / cf[BANDWIDTH]
    _push(ri, rf, s, ci, hq, rid)
    return cost


@compiled()
def _swap_in(ri: np.ndarray, s: np.ndarray, ci: np.ndarray, cf: np.ndarray, rid: int) -> float:
    """Bring back ``rid``'s swapped (or transferred) KV; its seconds, -1 if the
    blocks are not free."""
    need = ri[rid, SWAPPED]
    block = ci[BLOCK]
    if (need + block - 1) // block > s[FREE]:
        return -1.0
    ri[rid, KV] = 0
    _grow(ri, s, ci, rid, need)
    ri[rid, KV] = need
    seconds = 0.0 if ri[rid, TRANSFERRED] == 1 else need * cf[BYTES_PER_TOKEN] / cf[BANDWIDTH]
    ri[rid, SWAPPED] = 0
    ri[rid, TRANSFERRED] = 0
    return seconds


# --- one step ---------------------------------------------------------------------


@compiled(inline="always")
def _form(
    ri: np.ndarray,
    rf: np.ndarray,
    s: np.ndarray,
    sf: np.ndarray,
    ci: np.ndarray,
    cf: np.ndarray,
    ev: np.ndarray,
    hq: np.ndarray,
    rb: np.ndarray,
    t: float,
) -> bool:
    """Form the batch starting at ``t`` (running first, then admission on a step
    that preempted nothing) into ``rb`` rows 1-3 and its cost arguments into
    ``sf``; False when no iteration runs (``sf[T]`` is then the next step's time)."""
    budget = ci[BUDGET]
    nd = 0
    npre = 0
    extra = 0.0
    preempted = False
    i = 0
    while i < s[NRUN]:
        rid = rb[0, i]
        remaining = ri[rid, TARGET] - ri[rid, KV]
        tokens = min(remaining, budget) if remaining > 0 else (1 if budget > 0 else 0)
        if tokens == 0:
            i += 1
            continue
        evicted = False
        while not _grow(ri, s, ci, rid, tokens):
            last = s[NRUN] - 1
            victim = rb[0, last]
            s[NRUN] = last
            extra += _preempt(ri, rf, s, ci, cf, ev, hq, victim, t)
            preempted = True
            if victim == rid:
                evicted = True
                break
        if evicted:
            continue
        budget -= tokens
        if remaining > 0:
            rb[2, npre] = rid
            rb[3, npre] = tokens
            npre += 1
        else:
            rb[1, nd] = rid
            nd += 1
        i += 1
    if not preempted:
        while s[NRUN] < ci[MAX_SEQS] and budget > 0:
            rid = _peek(ri, rf, s, ci, cf, hq, t)
            if rid < 0:
                break
            if ri[rid, SWAPPED] > 0:
                seconds = _swap_in(ri, s, ci, cf, rid)
                if seconds < 0:
                    break
                _take(ri, s, rid)
                extra += seconds
                rb[0, s[NRUN]] = rid
                s[NRUN] += 1
                if math.isnan(rf[rid, ADMITTED]):
                    rf[rid, ADMITTED] = t
                if budget >= 1 and ri[rid, TARGET] <= ri[rid, KV] and _grow(ri, s, ci, rid, 1):
                    budget -= 1
                    rb[1, nd] = rid
                    nd += 1
                continue
            remaining = ri[rid, TARGET] - ri[rid, KV]
            chunk = min(remaining, budget)
            if ci[CHUNKED] == 0 and chunk < remaining:
                break
            if not _grow(ri, s, ci, rid, chunk):
                break
            _take(ri, s, rid)
            budget -= chunk
            rb[0, s[NRUN]] = rid
            s[NRUN] += 1
            if math.isnan(rf[rid, ADMITTED]):
                rf[rid, ADMITTED] = t
            rb[2, npre] = rid
            rb[3, npre] = chunk
            npre += 1
    if nd == 0 and npre == 0:
        if extra > 0:
            sf[T] = t + extra
            return False
        # Nothing fits: without chunked prefill, a request recomputing after a
        # preemption can need more than the budget. It can never run: fail it.
        rid = _peek(ri, rf, s, ci, cf, hq, t)
        if rid >= 0:
            _take(ri, s, rid)
            _settle(ri, rf, s, ev, rid, REJECTED, t)
        return False
    p_tokens = 0
    p_attn = 0.0
    for j in range(npre):
        c = rb[3, j]
        p_tokens += c
        p_attn += c * (ri[rb[2, j], KV] + (c + 1) / 2)
    d_ctx = 0
    for j in range(nd):
        d_ctx += ri[rb[1, j], KV]
    s[NDEC], s[NPRE] = nd, npre
    sf[EXTRA], sf[PT], sf[PA], sf[DS], sf[DC] = extra, p_tokens, p_attn, nd, d_ctx
    return True


@compiled(inline="always")
def _emit(
    ri: np.ndarray,
    rf: np.ndarray,
    s: np.ndarray,
    ev: np.ndarray,
    rb: np.ndarray,
    sp: np.ndarray,
    rid: int,
    idx: int,
    end: float,
) -> None:
    """``rid`` emitted a token at ``end`` in iteration ``idx``."""
    if s[TOKENS] == 1:
        last = ri[rid, LASTSPAN]
        if last >= 0 and sp[last, 2] == idx:
            sp[last, 2] = idx + 1
        else:
            k = s[NSPAN]
            sp[k, 0], sp[k, 1], sp[k, 2] = rid, idx, idx + 1
            ri[rid, LASTSPAN] = k
            s[NSPAN] = k + 1
    if ri[rid, GEN] == 0:
        rf[rid, FIRST] = end
    if not math.isnan(rf[rid, LAST]):
        gap = end - rf[rid, LAST]
        if math.isnan(rf[rid, MAXGAP]) or gap > rf[rid, MAXGAP]:
            rf[rid, MAXGAP] = gap
    rf[rid, LAST] = end
    ri[rid, GEN] += 1
    if s[EVENTS] == 2:
        e = s[NEV]
        ev[e, 0], ev[e, 1], ev[e, 2] = float(rid), float(TOKEN), end
        s[NEV] = e + 1
    if ri[rid, GEN] >= ri[rid, OUTPUT]:
        _release(ri, s, rid)
        _unrun(s, rb, rid)
        _settle(ri, rf, s, ev, rid, OK, end)


@compiled(inline="always")
def _apply(
    ri: np.ndarray,
    rf: np.ndarray,
    s: np.ndarray,
    sf: np.ndarray,
    ci: np.ndarray,
    cf: np.ndarray,
    ev: np.ndarray,
    rb: np.ndarray,
    sp: np.ndarray,
    iend: np.ndarray,
    tele: np.ndarray,
    t: float,
    seconds: float,
) -> None:
    """Run the formed batch from ``t`` for ``seconds`` (plus swap seconds): tokens,
    completions, client timeouts, the telemetry row."""
    end = t + seconds + sf[EXTRA]
    idx = s[ITER]
    if s[TOKENS] == 1:
        iend[idx] = end
    s[ITER] = idx + 1
    nd, npre = s[NDEC], s[NPRE]
    for j in range(nd):
        rid = rb[1, j]
        if rf[rid, ARRIVAL] + cf[CLIENT_TIMEOUT] < end:
            _abort(ri, rf, s, cf, ev, rb, rid)
            continue
        ri[rid, KV] += 1
        _emit(ri, rf, s, ev, rb, sp, rid, idx, end)
    for j in range(npre):
        rid = rb[2, j]
        if rf[rid, ARRIVAL] + cf[CLIENT_TIMEOUT] < end:
            _abort(ri, rf, s, cf, ev, rb, rid)
            continue
        ri[rid, KV] += rb[3, j]
        if ri[rid, KV] >= ri[rid, TARGET]:
            _emit(ri, rf, s, ev, rb, sp, rid, idx, end)
    batch = nd + npre
    p_tokens = sf[PT]
    used = ci[NUM_BLOCKS] - s[FREE]
    k = s[NTELE]
    if (
        k > 0
        and p_tokens == 0
        and tele[k - 1, 4] == 0
        and tele[k - 1, 3] == batch
        and tele[k - 1, 1] == t
    ):
        row = k - 1
        tele[row, 2] += 1
    else:
        row = k
        s[NTELE] = k + 1
        tele[row, 0] = t
        tele[row, 2] = 1
        tele[row, 3] = batch
        tele[row, 4] = p_tokens
        tele[row, 9] = 0.0
        tele[row, 10] = 0.0
        tele[row, 11] = 0.0
    tele[row, 1] = end
    tele[row, 5] = s[NRUN]
    tele[row, 6] = s[QCOUNT]
    tele[row, 7] = used
    tele[row, 8] = s[PREEMPTIONS]
    tele[row, 9] += nd
    tele[row, 10] += sf[PA]
    tele[row, 11] += sf[DC]
    sf[T] = end
    sf[LAST_END] = end


@compiled()
def enter(
    ri: np.ndarray,
    rf: np.ndarray,
    s: np.ndarray,
    now: float,
    prompt: int,
    output: int,
    key: float,
    kv_ready: bool,
) -> None:
    """A live replica's next request arrives at ``now`` (not before the previous one;
    the caller made room): its prompt's KV and first token come from elsewhere when
    ``kv_ready``."""
    rid = s[N]
    arrival = max(now, rf[rid - 1, ARRIVAL]) if rid > 0 else now
    ri[rid, PROMPT] = prompt
    ri[rid, TARGET] = prompt
    ri[rid, OUTPUT] = output
    rf[rid, ARRIVAL] = arrival
    rf[rid, KEY] = key
    if kv_ready:
        ri[rid, SWAPPED] = prompt
        ri[rid, TRANSFERRED] = 1
        ri[rid, GEN] = 1
    s[N] = rid + 1


@compiled(inline="always")
def _told(s: np.ndarray, status: int) -> int:
    """``status``, plus HEARD when listener events wait in ``ev``."""
    return status + HEARD if s[NEV] > 0 else status


@compiled()
def advance(
    ri: np.ndarray,
    rf: np.ndarray,
    s: np.ndarray,
    sf: np.ndarray,
    ci: np.ndarray,
    cf: np.ndarray,
    ck: int,
    cp: np.ndarray,
    hq: np.ndarray,
    hd0: np.ndarray,
    hd1: np.ndarray,
    rb: np.ndarray,
    sp: np.ndarray,
    iend: np.ndarray,
    tele: np.ndarray,
    ev: np.ndarray,
    until: float,
    progress: bool,
) -> int:
    """Run every step starting at or before ``until`` (seconds); why it stopped
    (IDLE, BOUNDARY, NEED_COST, GROW or PROGRESS, plus HEARD when events wait)."""
    max_seqs = ci[MAX_SEQS]
    while True:
        if s[PHASE] == 1:  # a Python cost model gave this step's seconds
            s[PHASE] = 0
            _apply(ri, rf, s, sf, ci, cf, ev, rb, sp, iend, tele, sf[T], sf[COST])
        if (
            (s[TOKENS] == 1 and s[NSPAN] + max_seqs + 1 > sp.shape[0])
            or (s[TOKENS] == 1 and s[ITER] + 1 > iend.shape[0])
            or s[NTELE] + 1 > tele.shape[0]
            or (s[EVENTS] > 0 and s[NEV] + (s[N] - s[ENDED]) + 2 * max_seqs + 2 > ev.shape[0])
        ):
            return _told(s, GROW)
        if progress:
            s[SINCE] += 1
            if s[SINCE] >= PROGRESS_STEPS:
                s[SINCE] = 0
                return _told(s, PROGRESS)
        t = sf[T]
        _intake(ri, rf, s, ci, cf, ev, hq, hd0, hd1, t)
        if cf[CLIENT_TIMEOUT] < math.inf:
            j = 0
            while j < s[NRUN]:
                rid = rb[0, j]
                if rf[rid, ARRIVAL] + cf[CLIENT_TIMEOUT] <= t:
                    _abort(ri, rf, s, cf, ev, rb, rid)
                else:
                    j += 1
        if s[NRUN] == 0 and s[QCOUNT] == 0:
            if s[NEXT] < s[N]:
                sf[T] = max(t, rf[s[NEXT], ARRIVAL])
                continue
            return _told(s, IDLE)
        if t > until:
            return _told(s, BOUNDARY)
        if not _form(ri, rf, s, sf, ci, cf, ev, hq, rb, t):
            continue
        if ck == COST_PYTHON:
            s[PHASE] = 1
            return _told(s, NEED_COST)
        seconds = iteration_cost(ck, cp, sf[PT], sf[PA], sf[DS], sf[DC])
        _apply(ri, rf, s, sf, ci, cf, ev, rb, sp, iend, tele, t, seconds)
