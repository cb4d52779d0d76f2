"""The closed-form engine against the naive per-iteration reference (support/naive_engine.py):
every token time of every request within 1e-6 s, every outcome, preemption count and
telemetry row, across schedulers, chunked prefill, preemption, and queue limits."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from burstlab.sim.cost import Linear
from burstlab.sim.engine import OK, PENDING, REJECTED, TIMED_OUT, Engine, EngineConfig, SimResult
from burstlab.sim.presets import roofline
from support.naive_engine import NaiveEngine, NaiveResult

CODES = {"ok": OK, "rejected": REJECTED, "timed_out": TIMED_OUT, "pending": PENDING}
TOL = 1e-6

LINEAR = Linear(c0=0.004, c_prefill=5e-5, c_attn=1e-9, c_decode=2e-5, c_ctx=2e-8)
ROOFLINE = roofline("A100-80G", "Llama-2-7B")


def workload(
    n: int, rate: float, seed: int, max_prompt: int = 1500, max_output: int = 400
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bursty Gamma(0.5) arrivals at ``rate`` req/s, uniform lengths."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.gamma(0.5, 1 / (0.5 * rate), n))
    return arrivals, rng.integers(1, max_prompt, n), rng.integers(1, max_output, n)


def compare(fast: SimResult, naive: NaiveResult) -> None:
    """Assert the two runs agree on everything they both record."""
    n = len(naive.requests)
    assert fast.outcome.size == n
    for r in naive.requests:
        assert fast.outcome[r.rid] == CODES[r.outcome], r.rid
        assert fast.preemptions[r.rid] == r.preemptions, r.rid
        times = fast.token_times(r.rid)
        assert times.size == len(r.tokens), r.rid
        if r.tokens:
            assert np.max(np.abs(times - np.array(r.tokens))) <= TOL, r.rid
            assert abs(fast.first[r.rid] - r.tokens[0]) <= TOL, r.rid
        else:
            assert math.isnan(fast.first[r.rid]), r.rid
        if math.isnan(r.end):
            assert math.isnan(fast.end[r.rid]), r.rid
        else:
            assert abs(fast.end[r.rid] - r.end) <= TOL, r.rid
    assert fast.iterations == len(naive.iterations)
    # Each telemetry row is one step or one closed-form run of naive iterations.
    i = 0
    for start, end, k, batch, prefill, running, waiting, kv, preempted in fast.telemetry:
        run = naive.iterations[i : i + int(k)]
        assert len(run) == int(k) >= 1
        assert abs(run[0].start - start) <= TOL
        assert abs(run[-1].end - end) <= TOL
        assert all(it.batch == batch and it.prefill_tokens == prefill for it in run)
        last = run[-1]
        assert (last.running, last.waiting, last.kv_blocks, last.preemptions) == (
            running,
            waiting,
            kv,
            preempted,
        )
        i += int(k)
    assert i == len(naive.iterations)


def run_both(
    cfg: EngineConfig, cost: Any, arrivals: np.ndarray, prompts: np.ndarray, outputs: np.ndarray
) -> tuple[SimResult, NaiveResult]:
    fast = Engine(cfg, cost, fast=True).run(arrivals, prompts, outputs)
    naive = NaiveEngine(cfg, cost).run(arrivals, prompts, outputs)
    compare(fast, naive)
    return fast, naive


#: (config, what must happen in it). ``preempt``: preemptions occur; ``reject``,
#: ``timeout``: some requests fail that way.
CASES: list[tuple[EngineConfig, set[str]]] = [
    (EngineConfig(), set()),
    (EngineConfig(chunked_prefill=False, max_batched_tokens=2048), set()),
    (EngineConfig(num_blocks=300, max_num_seqs=48), {"preempt"}),
    (EngineConfig(num_blocks=300, preemption="swap"), {"preempt"}),
    (
        EngineConfig(
            num_blocks=150, preemption="swap", chunked_prefill=False, max_batched_tokens=1600
        ),
        {"preempt"},
    ),
    (EngineConfig(scheduler="srf", key="input", max_num_seqs=8), set()),
    (EngineConfig(scheduler="lrf", key="output", max_num_seqs=8, max_batched_tokens=1024), set()),
    (EngineConfig(scheduler="srf", key="output", aging=50.0, max_num_seqs=8), set()),
    (EngineConfig(scheduler="lrf", key="total", aging=20.0, num_blocks=300), {"preempt"}),
    (
        EngineConfig(scheduler="srf", key="total", num_blocks=250, preemption="swap"),
        {"preempt"},
    ),
    (
        EngineConfig(queue_cap=30, queue_timeout_s=5.0, max_num_seqs=16, num_blocks=400),
        {"preempt", "reject", "timeout"},
    ),
    (
        EngineConfig(
            block_size=32,
            num_blocks=150,
            scheduler="srf",
            key="total",
            aging=5.0,
            queue_timeout_s=3.0,
        ),
        {"preempt", "timeout"},
    ),
    # More sequences than the token budget: some decoders wait for budget.
    (EngineConfig(max_batched_tokens=64, max_num_seqs=128, num_blocks=400), {"preempt"}),
    # Prompts larger than the whole cache are rejected.
    (EngineConfig(num_blocks=60), {"reject"}),
    (EngineConfig(block_size=1, num_blocks=5000), {"preempt"}),
]


@pytest.mark.parametrize(
    ("case", "cost"),
    [(c, cost) for c in CASES for cost in (LINEAR, ROOFLINE)],
    ids=[
        f"{cost.kind}-{c[0].model_dump(exclude_defaults=True)}"
        for c in CASES
        for cost in (LINEAR, ROOFLINE)
    ],
)
def test_fast_engine_matches_the_naive_reference(
    case: tuple[EngineConfig, set[str]], cost: Any
) -> None:
    cfg, expect = case
    seed = CASES.index(case)
    rate = 15.0 if cost is LINEAR else 8.0
    fast, _ = run_both(cfg, cost, *workload(200, rate, seed))
    assert not (fast.outcome == PENDING).any()
    if "preempt" in expect:
        assert fast.preemptions.sum() > 0
    if "reject" in expect:
        assert (fast.outcome == REJECTED).any()
    if "timeout" in expect:
        assert (fast.outcome == TIMED_OUT).any()
    # the closed form did run: fewer rows than iterations
    assert len(fast.telemetry) < fast.iterations


def test_predicted_key_matches() -> None:
    arrivals, prompts, outputs = workload(200, 15.0, seed=99)
    predicted = np.random.default_rng(5).integers(1, 400, arrivals.size)
    cfg = EngineConfig(scheduler="srf", key="predicted", max_num_seqs=12, num_blocks=400)
    fast = Engine(cfg, LINEAR).run(arrivals, prompts, outputs, predicted)
    compare(fast, NaiveEngine(cfg, LINEAR).run(arrivals, prompts, outputs, predicted))


configs = st.builds(
    EngineConfig,
    max_num_seqs=st.integers(1, 64),
    max_batched_tokens=st.sampled_from([16, 256, 1024, 4096]),
    chunked_prefill=st.booleans(),
    block_size=st.sampled_from([1, 16, 32]),
    num_blocks=st.integers(20, 600),
    preemption=st.sampled_from(["recompute", "swap"]),
    scheduler=st.sampled_from(["fcfs", "srf", "lrf"]),
    key=st.sampled_from(["input", "output", "total"]),
    aging=st.sampled_from([0.0, 0.0, 10.0]),
    queue_cap=st.one_of(st.none(), st.integers(0, 40)),
    queue_timeout_s=st.one_of(st.none(), st.floats(0.1, 10.0)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs, seed=st.integers(0, 2**16), rate=st.floats(1.0, 40.0))
def test_random_configs_match_the_naive_reference(
    cfg: EngineConfig, seed: int, rate: float
) -> None:
    run_both(cfg, LINEAR, *workload(60, rate, seed, max_prompt=1200, max_output=200))
