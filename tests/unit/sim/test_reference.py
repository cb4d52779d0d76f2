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


# -- Overload, KV starvation and the failure modes of issue 15 -----------------------
#
# The reference's outcomes "client_timeout" and "preempted" join CODES here, so that
# compare() above reads them as they are.
from burstlab.sim.engine.result import CLIENT_TIMEOUT, PREEMPTED  # noqa: E402 (appended part)

CODES["client_timeout"] = CLIENT_TIMEOUT
CODES["preempted"] = PREEMPTED

#: Requests per second one default replica completes on :func:`workload`'s lengths
#: (prompts below 1200, outputs below 300), measured with every request at t = 0:
#: 13.0 under LINEAR, 5.4 under ROOFLINE. Overloaded cases offer three times this.
CAPACITY = {"linear": 13.0, "roofline": 5.4}

#: The failure limits an engine config may set beyond the ones above.
NEW_FIELDS = ("client_timeout_s", "max_preemptions")


def outcomes(fast: SimResult) -> set[int]:
    return {int(code) for code in np.unique(fast.outcome)}


def check_expected(fast: SimResult, expect: set[str]) -> None:
    """Assert each failure the case is meant to show does happen (and nothing pends)."""
    seen = outcomes(fast)
    assert PENDING not in seen
    wanted = {
        "reject": REJECTED,
        "timeout": TIMED_OUT,
        "client_timeout": CLIENT_TIMEOUT,
        "preempted": PREEMPTED,
    }
    for name, code in wanted.items():
        assert (code in seen) == (name in expect), name
    if "preempt" in expect:
        assert fast.preemptions.sum() > 0


#: Three times what one replica serves, so queues grow to a third or more of the
#: workload: (config, failures that must happen). The first three set no field the
#: engine lacked before issue 15.
OVERLOADED: list[tuple[EngineConfig, set[str]]] = [
    (EngineConfig(), {"preempt"}),
    (EngineConfig(scheduler="srf", key="input", preemption="swap", num_blocks=600), {"preempt"}),
    (
        EngineConfig(
            chunked_prefill=False, max_batched_tokens=2048, queue_timeout_s=3.0, queue_cap=50
        ),
        {"preempt", "reject", "timeout"},
    ),
    (EngineConfig(client_timeout_s=8.0), {"preempt", "client_timeout"}),
    (
        EngineConfig(
            scheduler="srf", key="total", aging=5.0, client_timeout_s=5.0, queue_timeout_s=2.0
        ),
        {"preempt", "timeout", "client_timeout"},
    ),
    (
        EngineConfig(
            chunked_prefill=False,
            max_batched_tokens=2048,
            preemption="swap",
            num_blocks=400,
            client_timeout_s=6.0,
            queue_cap=40,
            max_preemptions=2,
        ),
        {"preempt", "reject", "client_timeout", "preempted"},
    ),
    (
        EngineConfig(
            scheduler="lrf", key="output", num_blocks=500, max_preemptions=1, queue_timeout_s=4.0
        ),
        {"preempt", "timeout", "preempted"},
    ),
]


def _ids(cases: list[tuple[EngineConfig, set[str]]]) -> list[str]:
    return [str(c[0].model_dump(exclude_defaults=True)) for c in cases]


@pytest.mark.parametrize("cost", [LINEAR, ROOFLINE], ids=["linear", "roofline"])
@pytest.mark.parametrize("case", OVERLOADED, ids=_ids(OVERLOADED))
def test_overloaded_engine_matches_the_naive_reference(
    case: tuple[EngineConfig, set[str]], cost: Any
) -> None:
    cfg, expect = case
    rate = 3 * CAPACITY[cost.kind]
    arrivals, prompts, outputs = workload(
        300, rate, 100 + OVERLOADED.index(case), max_prompt=1200, max_output=300
    )
    fast, naive = run_both(cfg, cost, arrivals, prompts, outputs)
    check_expected(fast, expect)
    if cfg.queue_cap is None and cfg.queue_timeout_s is None:
        # nothing sheds the load early: at some point a sixth of the workload waits
        assert max(it.waiting for it in naive.iterations) >= 50


#: KV-starved: so few blocks, and prefill chunks so small, that a sixth or more of
#: all iterations preempt (with swap or without chunking fewer: a swap costs time,
#: and whole prompts are admitted less often). (config, failures that must happen,
#: whether a sixth of the iterations preempt).
STARVED: list[tuple[EngineConfig, set[str], bool]] = [
    (EngineConfig(block_size=1, num_blocks=600, max_batched_tokens=64), {"preempt"}, True),
    (
        EngineConfig(
            block_size=2, num_blocks=300, max_batched_tokens=32, scheduler="srf", key="total"
        ),
        {"preempt"},
        True,
    ),
    (
        EngineConfig(block_size=1, num_blocks=600, max_batched_tokens=64, preemption="swap"),
        {"preempt"},
        False,
    ),
    (
        EngineConfig(block_size=1, num_blocks=600, max_batched_tokens=64, max_preemptions=3),
        {"preempt", "preempted"},
        True,
    ),
    (
        EngineConfig(
            block_size=1,
            num_blocks=600,
            max_batched_tokens=64,
            preemption="swap",
            max_preemptions=0,
        ),
        {"preempt", "preempted"},
        False,
    ),
    (
        EngineConfig(
            block_size=2,
            num_blocks=300,
            max_batched_tokens=32,
            scheduler="srf",
            key="input",
            aging=10.0,
            queue_timeout_s=4.0,
            client_timeout_s=8.0,
            max_preemptions=2,
            queue_cap=20,
        ),
        {"preempt", "timeout", "preempted"},
        True,
    ),
    (
        EngineConfig(
            block_size=1,
            num_blocks=600,
            chunked_prefill=False,
            max_batched_tokens=512,
            preemption="swap",
            client_timeout_s=8.0,
            max_preemptions=0,
        ),
        {"preempt", "client_timeout", "preempted"},
        False,
    ),
]


@pytest.mark.parametrize(
    "case", STARVED, ids=[str(c[0].model_dump(exclude_defaults=True)) for c in STARVED]
)
def test_kv_starved_engine_matches_the_naive_reference(
    case: tuple[EngineConfig, set[str], bool],
) -> None:
    cfg, expect, starved = case
    arrivals, prompts, outputs = workload(
        200, CAPACITY["linear"], 200 + STARVED.index(case), max_prompt=300, max_output=300
    )
    fast, naive = run_both(cfg, LINEAR, arrivals, prompts, outputs)
    check_expected(fast, expect)
    counts = np.array([0] + [it.preemptions for it in naive.iterations])
    if starved:
        assert np.count_nonzero(np.diff(counts)) >= len(naive.iterations) / 6


@pytest.mark.slow
@pytest.mark.parametrize(
    "cfg",
    [
        EngineConfig(scheduler="srf", key="total", aging=2.0, queue_cap=800),
        EngineConfig(preemption="swap", num_blocks=800, client_timeout_s=120.0, max_preemptions=4),
    ],
    ids=["srf-cap", "swap-client-timeout-preemption-limit"],
)
def test_long_overload_matches_the_naive_reference(cfg: EngineConfig) -> None:
    """3,000 requests at three times capacity: about two thousand wait at the peak."""
    arrivals, prompts, outputs = workload(
        3000, 3 * CAPACITY["roofline"], 300, max_prompt=1200, max_output=300
    )
    _, naive = run_both(cfg, ROOFLINE, arrivals, prompts, outputs)
    assert max(it.waiting for it in naive.iterations) >= 500


# Hand-worked cases of the new rules, every iteration 1 s long (so token times are the
# step counts): (config, arrivals, prompts, outputs, expected per request as
# (outcome, end, token times, preemptions)).
ONE_SECOND = Linear(c0=1.0)
RuleCase = tuple[
    EngineConfig,
    list[float],
    list[int],
    list[int],
    list[tuple[str, float, list[float], int]],
]
RULES: dict[str, RuleCase] = {
    # a token exactly at the client deadline is emitted; the request fails at the
    # next step's start, at its deadline
    "token-at-deadline": (
        EngineConfig(client_timeout_s=3.0),
        [0.0],
        [10],
        [5],
        [("client_timeout", 3.0, [1.0, 2.0, 3.0], 0)],
    ),
    # a deadline inside an iteration fails the request there, without the token
    "deadline-inside-iteration": (
        EngineConfig(client_timeout_s=2.5),
        [0.0],
        [10],
        [5],
        [("client_timeout", 2.5, [1.0, 2.0], 0)],
    ),
    # SRF admits the short prompt first; the long one times out waiting (at its
    # deadline, found at the next step's start), the short one mid-decode; the
    # first request completes before its deadline
    "waiting-and-running": (
        EngineConfig(client_timeout_s=5.0, scheduler="srf", key="input", max_num_seqs=1),
        [0.0, 0.1, 0.2],
        [10, 500, 20],
        [2, 5, 10],
        [
            ("ok", 2.0, [1.0, 2.0], 0),
            ("client_timeout", 5.1, [], 0),
            ("client_timeout", 5.2, [3.0, 4.0, 5.0], 0),
        ],
    ),
    # as above, with a queue deadline at the same time as the client's: it goes first
    # for the waiting request; the running one had its first token and ignores it
    "queue-before-client": (
        EngineConfig(
            client_timeout_s=5.0, queue_timeout_s=5.0, scheduler="srf", key="input", max_num_seqs=1
        ),
        [0.0, 0.1, 0.2],
        [10, 500, 20],
        [2, 5, 10],
        [
            ("ok", 2.0, [1.0, 2.0], 0),
            ("timed_out", 5.1, [], 0),
            ("client_timeout", 5.2, [3.0, 4.0, 5.0], 0),
        ],
    ),
    # ten one-token blocks: the second request is preempted at t = 2 and, over the
    # limit of none, fails there
    "preemption-limit": (
        EngineConfig(block_size=1, num_blocks=10, max_preemptions=0),
        [0.0, 0.0],
        [4, 4],
        [5, 5],
        [("ok", 5.0, [1.0, 2.0, 3.0, 4.0, 5.0], 0), ("preempted", 2.0, [1.0, 2.0], 1)],
    ),
    # within the limit it is re-queued and recomputed once the first one is done
    "preemption-within-limit": (
        EngineConfig(block_size=1, num_blocks=10, max_preemptions=1),
        [0.0, 0.0],
        [4, 4],
        [5, 5],
        [
            ("ok", 5.0, [1.0, 2.0, 3.0, 4.0, 5.0], 0),
            ("ok", 8.0, [1.0, 2.0, 6.0, 7.0, 8.0], 1),
        ],
    ),
}


@pytest.mark.parametrize("name", list(RULES))
def test_the_reference_follows_the_failure_rules(name: str) -> None:
    cfg, arrivals, prompts, outputs, expected = RULES[name]
    naive = NaiveEngine(cfg, ONE_SECOND).run(
        np.array(arrivals), np.array(prompts), np.array(outputs)
    )
    got = [(r.outcome, r.end, r.tokens, r.preemptions) for r in naive.requests]
    assert got == expected


@pytest.mark.parametrize("name", list(RULES))
def test_fast_engine_follows_the_failure_rules(name: str) -> None:
    cfg, arrivals, prompts, outputs, _ = RULES[name]
    run_both(cfg, ONE_SECOND, np.array(arrivals), np.array(prompts), np.array(outputs))


failure_configs = st.builds(
    EngineConfig,
    max_num_seqs=st.integers(1, 64),
    max_batched_tokens=st.sampled_from([16, 64, 256, 1024, 4096]),
    chunked_prefill=st.booleans(),
    block_size=st.sampled_from([1, 16, 32]),
    num_blocks=st.integers(20, 600),
    preemption=st.sampled_from(["recompute", "swap"]),
    scheduler=st.sampled_from(["fcfs", "srf", "lrf"]),
    key=st.sampled_from(["input", "output", "total"]),
    aging=st.sampled_from([0.0, 0.0, 10.0]),
    queue_cap=st.one_of(st.none(), st.integers(0, 40)),
    queue_timeout_s=st.one_of(st.none(), st.floats(0.1, 10.0)),
    client_timeout_s=st.one_of(st.none(), st.floats(0.1, 20.0), st.sampled_from([1.0, 2.0])),
    max_preemptions=st.one_of(st.none(), st.integers(0, 4)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=failure_configs, seed=st.integers(0, 2**16), rate=st.floats(1.0, 60.0))
def test_random_failure_configs_match_the_naive_reference(
    cfg: EngineConfig, seed: int, rate: float
) -> None:
    """Up to four times LINEAR's capacity, with every failure limit in play."""
    run_both(cfg, LINEAR, *workload(60, rate, seed, max_prompt=1200, max_output=200))


#: llama.cpp-like slots: as many one-slot "blocks" as sequences, each a slot's whole
#: context, and requests longer than a slot rejected (max_model_len).
SLOTS = [
    EngineConfig(max_num_seqs=4, block_size=512, num_blocks=4, max_model_len=512),
    EngineConfig(
        max_num_seqs=4,
        block_size=600,
        num_blocks=4,
        max_model_len=600,
        max_batched_tokens=256,
        queue_timeout_s=4.0,
    ),
    EngineConfig(max_model_len=700, num_blocks=300, preemption="swap"),
]


@pytest.mark.parametrize("cfg", SLOTS, ids=lambda c: str(c.model_dump(exclude_defaults=True)))
def test_slots_and_max_model_len_match_the_naive_reference(cfg: EngineConfig) -> None:
    arrivals, prompts, outputs = workload(300, 8.0, 31, max_prompt=600, max_output=300)
    fast, _ = run_both(cfg, LINEAR, arrivals, prompts, outputs)
    too_long = prompts + outputs > cfg.max_model_len
    assert too_long.any()
    assert (fast.outcome[too_long] == REJECTED).all()
