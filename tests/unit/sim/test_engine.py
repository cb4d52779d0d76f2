"""The engine: cost-model timing at low load, conservation, scheduling, KV pressure,
and the fast path against stepping one iteration at a time."""

from __future__ import annotations

import numpy as np
import pytest

from burstlab.sim.cost import Linear
from burstlab.sim.engine import OK, PENDING, REJECTED, TIMED_OUT, Engine, EngineConfig
from support.sim import LinearCost, workload


def test_low_load_ttft_and_tpot_are_the_cost_model() -> None:
    cost = LinearCost()
    engine = Engine(EngineConfig(), cost)
    res = engine.run([0.0, 100.0], [500, 300], [10, 5])
    prefill = cost.iteration_s(500, 500 * (500 + 1) / 2, 0, 0)
    assert res.first[0] == pytest.approx(prefill, abs=1e-12)
    times = res.token_times(0)
    assert times.size == 10
    # decode iteration j reads a context of 500 + j tokens
    expected = [cost.iteration_s(0, 0, 1, 500 + j) for j in range(9)]
    assert np.allclose(np.diff(times), expected, atol=1e-12)
    assert res.outcome.tolist() == [OK, OK]


def test_every_request_ends_exactly_once() -> None:
    arrivals, prompts, outputs = workload(3000, 40.0)
    cfg = EngineConfig(num_blocks=600, max_num_seqs=64, queue_cap=200, queue_timeout_s=20.0)
    res = Engine(cfg, LinearCost()).run(arrivals, prompts, outputs)
    assert not (res.outcome == PENDING).any()
    ok = res.outcome == OK
    for rid in np.flatnonzero(ok)[:500]:
        assert res.token_times(rid).size == max(outputs[rid], 1)
    assert np.all(res.end[~ok] >= arrivals[~ok])
    assert np.all(res.first[ok] <= res.end[ok])


def test_shortest_first_beats_fcfs_on_mean_latency_at_high_load() -> None:
    arrivals, prompts, outputs = workload(2000, 30.0, seed=3)
    e2e = {}
    for scheduler in ("fcfs", "srf"):
        cfg = EngineConfig(scheduler=scheduler, key="output", max_num_seqs=16)
        res = Engine(cfg, LinearCost()).run(arrivals, prompts, outputs)
        e2e[scheduler] = float(np.nanmean(res.end - arrivals))
    assert e2e["srf"] < 0.8 * e2e["fcfs"]


def test_a_burst_against_a_small_cache_preempts_and_enough_blocks_do_not() -> None:
    arrivals = np.zeros(64)
    prompts = np.full(64, 600)
    outputs = np.full(64, 300)
    small = Engine(EngineConfig(num_blocks=800), LinearCost()).run(arrivals, prompts, outputs)
    big = Engine(EngineConfig(num_blocks=8000), LinearCost()).run(arrivals, prompts, outputs)
    assert small.preemptions.sum() > 0
    assert big.preemptions.sum() == 0
    assert (big.outcome == OK).all()


def test_queue_cap_and_timeout_fail_requests() -> None:
    arrivals = np.zeros(50)
    cfg = EngineConfig(max_num_seqs=2, queue_cap=10, queue_timeout_s=1.0)
    res = Engine(cfg, LinearCost()).run(arrivals, np.full(50, 100), np.full(50, 200))
    # all arrive at t=0: the queue takes 10, 40 are rejected, 2 of the 10 start
    assert (res.outcome == REJECTED).sum() == 40
    assert (res.outcome == TIMED_OUT).sum() > 0
    assert np.allclose(res.end[res.outcome == TIMED_OUT], 1.0)


CONFIGS = [
    EngineConfig(),
    EngineConfig(chunked_prefill=False, max_batched_tokens=2048),
    EngineConfig(num_blocks=400, max_num_seqs=48),
    EngineConfig(num_blocks=400, preemption="swap"),
    EngineConfig(scheduler="srf", key="input", max_num_seqs=8),
    EngineConfig(scheduler="lrf", key="output", max_num_seqs=8, max_batched_tokens=1024),
    EngineConfig(scheduler="srf", key="output", aging=50.0, max_num_seqs=8),
    EngineConfig(queue_cap=30, queue_timeout_s=5.0, max_num_seqs=16, num_blocks=500),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: str(c.model_dump(exclude_defaults=True)))
def test_a_compiled_cost_model_matches_one_called_from_python(cfg: EngineConfig) -> None:
    arrivals, prompts, outputs = workload(400, 15.0, seed=7)
    linear = Linear(c0=0.004, c_prefill=5e-5, c_attn=1e-9, c_decode=2e-5, c_ctx=2e-8)
    fast = Engine(cfg, linear).run(arrivals, prompts, outputs)
    slow = Engine(cfg, LinearCost()).run(arrivals, prompts, outputs)
    assert np.array_equal(fast.outcome, slow.outcome)
    assert np.array_equal(fast.preemptions, slow.preemptions)
    assert np.allclose(fast.end, slow.end, atol=1e-6, equal_nan=True)
    assert np.allclose(fast.first, slow.first, atol=1e-6, equal_nan=True)
    for rid in range(arrivals.size):
        a, b = fast.token_times(rid), slow.token_times(rid)
        assert a.size == b.size
        assert np.allclose(a, b, atol=1e-6), rid
    assert fast.iterations == slow.iterations
    assert np.array_equal(fast.telemetry[:, 2:], slow.telemetry[:, 2:])


def test_online_engine_matches_the_offline_run() -> None:
    """Fed one request at a time at its arrival, the live engine produces the same
    token times as the whole-workload run."""
    from burstlab.sim.engine import TOKEN, OnlineEngine

    arrivals, prompts, outputs = workload(300, 10.0, seed=11)
    cfg = EngineConfig(num_blocks=500, max_num_seqs=24, queue_cap=40)
    offline = Engine(cfg, LinearCost()).run(arrivals, prompts, outputs)
    tokens: dict[int, list[float]] = {}
    ends: dict[int, tuple[int, float]] = {}

    def listen(rid: int, code: int, when: float) -> None:
        if code == TOKEN:
            tokens.setdefault(rid, []).append(when)
        else:
            ends[rid] = (code, when)

    live = OnlineEngine(Engine(cfg, LinearCost()), listen)
    for i in range(arrivals.size):
        live.advance(float(arrivals[i]))
        assert live.add(float(arrivals[i]), int(prompts[i]), int(outputs[i])) == i
    while live.advance(1e12) is not None:
        pass
    for rid in range(arrivals.size):
        assert ends[rid][0] == offline.outcome[rid]
        assert np.allclose(tokens.get(rid, []), offline.token_times(rid), atol=1e-9)


def test_a_telemetry_sink_gets_exactly_the_rows_a_run_keeps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Chunks of a few rows (the last row of each stays behind to be extended)."""
    from burstlab.sim.engine import replica

    monkeypatch.setattr(replica, "SINK_ROWS", 7)
    arrivals, prompts, outputs = workload(300, 8.0, seed=2)
    engine = Engine(EngineConfig(num_blocks=500), LinearCost())
    kept = engine.run(arrivals, prompts, outputs)
    chunks: list[np.ndarray] = []
    streamed = engine.run(arrivals, prompts, outputs, telemetry_sink=chunks.append)
    assert len(chunks) > 10
    assert streamed.telemetry.shape[0] == 0
    assert streamed.steps == kept.steps == kept.telemetry.shape[0]
    rows = np.concatenate(chunks)
    assert np.array_equal(rows[:, :9], kept.telemetry)
    assert np.array_equal(rows[:, 9:], kept.load)
    assert np.array_equal(streamed.end, kept.end, equal_nan=True)
