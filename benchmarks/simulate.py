"""Simulator speed: requests and decode iterations per wall-second on one replica.

A seeded Gamma(shape 0.5) / Zipf workload runs through the default engine
(Llama-2-7B on an A100-80G, roofline cost) at about 80% load (the rate whose
busy share of simulated time is 0.8, found by bisection on a 5,000-request
sample). Prints the fast engine's rates on ``--requests`` (default 1M) and, on a
20k-request subset, the ratio against the naive per-iteration reference engine
kept in the tests (``tests/support/naive_engine.py``: plain lists, one scalar
cost call per iteration; the tests compare every token time with it) and against
the engine stepping every iteration (``fast=False``). Goals from the issue:
>= 100,000 requests/s and >= 50x the reference.

    .venv/bin/python benchmarks/simulate.py [--requests 1000000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from burstlab.sim.engine import OK, PENDING, REJECTED, TIMED_OUT, Engine, SimResult
from burstlab.sim.spec import EngineSpec

# The naive reference engine lives with the tests' support code (it is test code, not
# part of the package): make tests/ importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.naive_engine import NaiveEngine

CODES = {"ok": OK, "rejected": REJECTED, "timed_out": TIMED_OUT, "pending": PENDING}

GOAL_RPS = 100_000
GOAL_RATIO = 50.0


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


def run(engine: Engine, n: int, rate: float) -> tuple[SimResult, float, float]:
    arrivals, inputs, outputs = workload(n, rate)
    start = time.perf_counter()
    result = engine.run(arrivals, inputs, outputs)
    return result, time.perf_counter() - start, float(arrivals[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--reference", type=int, default=20_000)
    args = parser.parse_args()
    spec = EngineSpec()
    fast = spec.build()
    slow = Engine(fast.cfg, fast.cost, fast=False)

    lo, hi = 0.5, 50.0
    for _ in range(12):
        mid = (lo * hi) ** 0.5
        result, _, span = run(fast, 5000, mid)
        if busy_share(result, span) < 0.8:
            lo = mid
        else:
            hi = mid
    rate = lo
    print(f"engine: Llama-2-7B on A100-80G (roofline); ~80% load at {rate:.2f} req/s")

    result, seconds, span = run(fast, args.requests, rate)
    print(
        f"fast engine, {args.requests:,} requests ({span / 3600:.1f} h simulated): "
        f"{seconds:.2f} s, {args.requests / seconds:,.0f} requests/s, "
        f"{result.iterations / seconds:,.0f} iterations/s, {len(result.telemetry):,} steps, "
        f"busy {busy_share(result, span):.2f}"
    )
    arrivals, inputs, outputs = workload(args.reference, rate)
    fast_sub, fast_s, _ = run(fast, args.reference, rate)
    step_sub, step_s, _ = run(slow, args.reference, rate)
    start = time.perf_counter()
    naive = NaiveEngine(fast.cfg, fast.cost).run(arrivals, inputs, outputs)
    naive_s = time.perf_counter() - start
    naive_outcome = np.array([CODES[r.outcome] for r in naive.requests])
    naive_end = np.array([r.end for r in naive.requests])
    same = np.array_equal(fast_sub.outcome, naive_outcome) and np.allclose(
        fast_sub.end, naive_end, atol=1e-6, equal_nan=True
    )
    same_step = np.array_equal(fast_sub.outcome, step_sub.outcome) and np.allclose(
        fast_sub.end, step_sub.end, atol=1e-6, equal_nan=True
    )
    ratio = naive_s / fast_s
    print(
        f"naive reference (tests/support/naive_engine.py), {args.reference:,} requests: "
        f"{naive_s:.2f} s against {fast_s:.2f} s: {ratio:.2f}x; "
        f"same outcomes and end times: {same}"
    )
    print(
        f"engine stepping every iteration (fast=False), {args.reference:,} requests: "
        f"{step_s:.2f} s: {step_s / fast_s:.2f}x; same outcomes and end times: {same_step}"
    )
    rps = args.requests / seconds
    print(f"{'PASS' if rps >= GOAL_RPS else 'FAIL'}  >= {GOAL_RPS:,} requests/s ({rps:,.0f})")
    verdict = "PASS" if ratio >= GOAL_RATIO else "FAIL"
    print(f"{verdict}  >= {GOAL_RATIO:g}x the naive reference ({ratio:.2f}x)")
    print(
        "clusters: benchmarks/cluster.py; vidur: not compared (its PyPI wheel fetches "
        "GPU profiling data from the Hugging Face Hub at run time; not available offline)"
    )


if __name__ == "__main__":
    main()
