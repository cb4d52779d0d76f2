"""Simulator speed: requests and decode iterations per wall-second on one replica.

A seeded Gamma(shape 0.5) / Zipf workload runs through the default engine
(Llama-2-7B on an A100-80G, roofline cost) at about 80% load (the rate whose
busy share of simulated time is 0.8, found by bisection on a 5,000-request
sample), and at 3x the highest rate it keeps up with (overloaded: the queue grows,
the cache stays full and requests are preempted).
Prints the compiled engine's rates, with and without token times kept, and the
ratio against the naive per-iteration reference engine kept in the tests
(``tests/support/naive_engine.py``: plain lists, one scalar cost call per
iteration; the tests compare every token time with it) on a subset, measured in
the same run. Goals from issue 15: >= 100,000 requests/s and >= 50x the reference
at 80% load on 1M requests; >= 50,000 requests/s overloaded on 200k requests.

    .venv/bin/python benchmarks/simulate.py [--requests 1000000] [--overload 200000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from burstlab.sim.engine import (
    CLIENT_TIMEOUT,
    OK,
    PENDING,
    PREEMPTED,
    REJECTED,
    TIMED_OUT,
    Engine,
    SimResult,
)
from burstlab.sim.spec import EngineSpec

# The naive reference engine lives with the tests' support code (it is test code, not
# part of the package): make tests/ importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.naive_engine import NaiveEngine

CODES = {
    "ok": OK,
    "rejected": REJECTED,
    "timed_out": TIMED_OUT,
    "pending": PENDING,
    "client_timeout": CLIENT_TIMEOUT,
    "preempted": PREEMPTED,
}

GOAL_RPS = 100_000
GOAL_RATIO = 50.0
GOAL_OVERLOAD_RPS = 50_000


def workload(n: int, rate: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gamma(0.5) gaps at ``rate`` req/s; Zipf(1.5) lengths (inputs up to 4k, outputs up to 1k)."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.gamma(0.5, 1 / (0.5 * rate), n))
    inputs = np.minimum(rng.zipf(1.5, n) * 32, 4096)
    outputs = np.minimum(rng.zipf(1.6, n) * 16, 1024)
    return arrivals, inputs, outputs


def busy_share(result: SimResult, span: float) -> float:
    t = result.telemetry
    return float((t[:, 1] - t[:, 0]).sum() / span) if span > 0 else 0.0


def rate_at_load(engine: Engine, share: float = 0.8) -> float:
    """The rate (req/s) whose busy share of simulated time on ``engine`` is ``share``,
    by bisection on a 5,000-request sample."""
    lo, hi = 0.5, 50.0
    for _ in range(12):
        mid = (lo * hi) ** 0.5
        result, _, span = run(engine, 5000, mid)
        lo, hi = (mid, hi) if busy_share(result, span) < share else (lo, mid)
    return lo


def run(
    engine: Engine, n: int, rate: float, *, token_times: bool = True
) -> tuple[SimResult, float, float]:
    arrivals, inputs, outputs = workload(n, rate)
    start = time.perf_counter()
    result = engine.run(arrivals, inputs, outputs, token_times=token_times)
    return result, time.perf_counter() - start, float(arrivals[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--overload", type=int, default=200_000)
    parser.add_argument("--reference", type=int, default=20_000)
    args = parser.parse_args()
    spec = EngineSpec()
    fast = spec.build()
    fast.run(*workload(100, 1.0))  # compile (or load numba's cache) outside the timings

    rate = rate_at_load(fast)
    print(f"engine: Llama-2-7B on A100-80G (roofline); ~80% load at {rate:.2f} req/s")

    for token_times in (True, False):
        result, seconds, span = run(fast, args.requests, rate, token_times=token_times)
        rps = args.requests / seconds
        kept = "token times kept" if token_times else "no token times"
        print(
            f"engine, {args.requests:,} requests ({span / 3600:.1f} h simulated), {kept}: "
            f"{seconds:.2f} s, {rps:,.0f} requests/s, "
            f"{result.iterations / seconds:,.0f} iterations/s, busy {busy_share(result, span):.2f}"
        )
        if token_times:
            main_rps = rps
        del result

    arrivals, inputs, outputs = workload(args.reference, rate)
    fast_sub, fast_s, _ = run(fast, args.reference, rate)
    start = time.perf_counter()
    naive = NaiveEngine(fast.cfg, fast.cost).run(arrivals, inputs, outputs)
    naive_s = time.perf_counter() - start
    naive_outcome = np.array([CODES[r.outcome] for r in naive.requests])
    naive_end = np.array([r.end for r in naive.requests])
    same = np.array_equal(fast_sub.outcome, naive_outcome) and np.allclose(
        fast_sub.end, naive_end, atol=1e-6, equal_nan=True
    )
    ratio = naive_s / fast_s
    print(
        f"naive reference (tests/support/naive_engine.py), {args.reference:,} requests: "
        f"{naive_s:.2f} s against {fast_s:.3f} s: {ratio:.1f}x; "
        f"same outcomes and end times: {same}"
    )

    # Capacity: the highest rate the engine keeps up with (the last request ends within
    # 10% of the arrivals' span on a 5,000-request sample); overload is three times it.
    lo, hi = rate, 100 * rate
    for _ in range(12):
        mid = (lo * hi) ** 0.5
        result, _, span = run(fast, 5000, mid, token_times=False)
        lo, hi = (mid, hi) if np.nanmax(result.end) <= 1.1 * span else (lo, mid)
    capacity = lo
    over, over_s, _ = run(fast, args.overload, 3 * capacity)
    over_rps = args.overload / over_s
    tel = over.telemetry
    busy = tel[:, 1] - tel[:, 0]
    kv_full = float((busy * (tel[:, 7] >= 0.9 * fast.cfg.num_blocks)).sum() / busy.sum())
    print(
        f"overloaded: 3x the {capacity:.1f} req/s the engine keeps up with, "
        f"{args.overload:,} requests, token times kept: {over_s:.2f} s, {over_rps:,.0f} "
        f"requests/s; {int(over.preemptions.sum()):,} preemptions, up to "
        f"{int(tel[:, 6].max()):,} waiting, KV cache >= 90% full {kv_full:.0%} of the busy time"
    )
    verdict = "PASS" if main_rps >= GOAL_RPS else "FAIL"
    print(f"{verdict}  >= {GOAL_RPS:,} requests/s ({main_rps:,.0f})")
    verdict = "PASS" if ratio >= GOAL_RATIO else "FAIL"
    print(f"{verdict}  >= {GOAL_RATIO:g}x the naive reference ({ratio:.1f}x)")
    verdict = "PASS" if over_rps >= GOAL_OVERLOAD_RPS else "FAIL"
    print(f"{verdict}  >= {GOAL_OVERLOAD_RPS:,} requests/s overloaded ({over_rps:,.0f})")
    print(
        "clusters: benchmarks/cluster.py; vidur: not compared (its PyPI wheel fetches "
        "GPU profiling data from the Hugging Face Hub at run time; not available offline)"
    )


if __name__ == "__main__":
    main()
