"""A simulated run directory reads like a benchmark run: records, summary, report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from burstlab.report.run import render_run
from burstlab.results.bursts import recovery
from burstlab.results.records import load_records
from burstlab.sim.engine import Engine, EngineConfig
from burstlab.sim.simulate import simulate
from burstlab.trace.readers import read_trace
from support.frames import workload
from support.sim import LinearCost


@pytest.mark.slow
def test_simulated_run_directory(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    arrivals = np.sort(rng.uniform(0, 60, 400)).tolist()
    table = workload(arrivals, input_tokens=300, output_tokens=50)
    engine = Engine(EngineConfig(max_num_seqs=4, queue_cap=20), LinearCost())
    summary = simulate(table, engine, tmp_path / "run").summary
    records = load_records(tmp_path / "run")
    assert records.height == 400
    c = summary.counts
    assert c.ok + c.failed == 400
    refused = engine.run(np.array(arrivals), np.full(400, 300), np.full(400, 50)).outcome
    assert summary.failures_by_kind.get("http_429", 0) == int((refused == 1).sum())
    ok = records.filter(pl.col("outcome") == "ok")
    assert (ok["output_tokens_achieved"] == 50).all()
    assert (ok["schedule_lag_s"] == 0).all()
    assert summary.burst is not None
    assert summary.burst.burst.requests > 0
    for name in (
        "run.json",
        "schedule.parquet",
        "telemetry.parquet",
        "summary.json",
        "vllm.json",
        "metrics.csv",
    ):
        assert (tmp_path / "run" / name).exists()
    html = render_run(tmp_path / "run").read_text()
    assert "burstlab simulate report" in html
    assert "Simulated engine over time" in html
    trace, _ = read_trace(tmp_path / "run" / "records.jsonl")
    assert trace.height == 400


def test_recovery_is_the_time_until_ttft_is_back_to_its_baseline() -> None:
    arrival = np.arange(0, 60, 0.25)
    ttft = np.full(arrival.size, 0.1)
    ttft[(arrival >= 10) & (arrival < 20)] = 5.0  # the burst
    ttft[(arrival >= 20) & (arrival < 25)] = 3.0  # its backlog drains
    ttft[(arrival >= 40) & (arrival < 45)] = 4.0  # a second burst, absorbed at once after
    records = pl.DataFrame({"arrival_s": arrival, "outcome": "ok", "ttft_s": ttft})
    out = recovery(records, [(10.0, 20.0), (40.0, 45.0)], 1.0)
    assert out.baseline_ttft_p90_s == 0.1
    assert [b.recovery_s for b in out.bursts] == [5.0, 0.0]
    assert out.recovery_max_s == 5.0
    # failures count as slow: a burst whose aftermath fails never recovers before the next
    failed = records.with_columns(
        pl.when((pl.col("arrival_s") >= 20) & (pl.col("arrival_s") < 40))
        .then(pl.lit("failed"))
        .otherwise(pl.col("outcome"))
        .alias("outcome")
    )
    out = recovery(failed, [(10.0, 20.0), (40.0, 45.0)], 1.0)
    assert out.bursts[0].recovery_s is None
    assert out.not_recovered == 1


def test_a_burst_against_a_small_engine_takes_longer_to_recover(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    steady = np.sort(rng.uniform(0, 120, 240))
    burst = np.sort(rng.uniform(50, 54, 400))
    arrivals = np.sort(np.concatenate([steady, burst])).tolist()
    table = workload(arrivals, input_tokens=300, output_tokens=100)
    seconds = []
    for seqs in (64, 8):
        engine = Engine(EngineConfig(max_num_seqs=seqs), LinearCost())
        burst = simulate(table, engine, tmp_path / f"run{seqs}").summary.burst
        assert burst is not None
        assert burst.recovery.not_recovered == 0
        seconds.append(burst.recovery.recovery_max_s)
    assert seconds[1] > seconds[0] + 5
