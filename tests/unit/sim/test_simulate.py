"""A simulated run directory reads like a benchmark run: its requests table, summary, report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import polars.selectors as cs
import pytest

from burstlab.report.run import render_run
from burstlab.results.bursts import recovery
from burstlab.results.export import vllm_result
from burstlab.results.manifest import Manifest
from burstlab.results.records import load_records
from burstlab.results.requests import summary_view
from burstlab.results.rundir import RunDir
from burstlab.results.slo import SLO
from burstlab.results.summary import summarize
from burstlab.sim.engine import Engine, EngineConfig, SimResult
from burstlab.sim.engine.result import (
    CLIENT_TIMEOUT,
    OK,
    PENDING,
    PREEMPTED,
    REJECTED,
    TIMED_OUT,
)
from burstlab.sim.simulate import FATES, simulate, simulate_into
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
    assert summary.failures_by_kind.get("http_429", 0) == int((refused == REJECTED).sum())
    ok = records.filter(pl.col("outcome") == "ok")
    assert (ok["output_tokens_achieved"] == 50).all()
    assert (ok["schedule_lag_s"] == 0).all()
    assert summary.burst is not None
    assert summary.burst.burst.requests > 0
    assert not summary.token_times
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"run.json", "requests.parquet", "telemetry.parquet", "summary.json"} <= files
    assert {"vllm.json", "metrics.csv"} <= files
    assert not {"records.jsonl", "schedule.parquet"} & files  # the requests table holds both
    scheduled = RunDir(tmp_path / "run").schedule()
    assert scheduled is not None
    assert scheduled.select(table.columns).equals(table)
    html = render_run(tmp_path / "run").read_text()
    assert "burstlab simulate report" in html
    assert "Simulated engine over time" in html
    assert "token times were not kept" in html
    trace, report = read_trace(tmp_path / "run" / "requests.parquet")
    assert report.format == "records"
    assert trace.height == 400
    assert int(trace["failed"].sum()) == c.failed  # the run's failures, as records say


def _overloaded(tmp_path: Path, *, token_times: bool) -> tuple[SimResult, pl.DataFrame, Any]:
    """A bursty overload with every failure limit set, simulated into ``tmp_path``."""
    rng = np.random.default_rng(3)
    arrivals = np.sort(np.concatenate([rng.uniform(0, 30, 150), rng.uniform(10, 12, 250)]))
    outputs = np.random.default_rng(4).integers(50, 600, 400)
    table = workload(arrivals.tolist(), input_tokens=400).with_columns(
        pl.Series("output_tokens", outputs, dtype=pl.Int32)
    )
    cfg = EngineConfig(
        max_num_seqs=32,
        num_blocks=100,
        queue_cap=200,
        queue_timeout_s=3.0,
        max_preemptions=0,
        client_timeout_s=3.0,
    )
    engine = Engine(cfg, LinearCost())
    with RunDir.create(tmp_path, records=False) as out:
        run, result = simulate_into(out, table, engine, token_times=token_times)
    return result, RunDir(tmp_path).records(), run.summary  # type: ignore[return-value]


def test_every_outcome_reads_as_bench_names_it(tmp_path: Path) -> None:
    result, records, summary = _overloaded(tmp_path, token_times=False)
    assert set(FATES) == {OK, REJECTED, TIMED_OUT, PENDING, CLIENT_TIMEOUT, PREEMPTED}
    codes = set(np.unique(result.outcome).tolist())
    assert codes == {OK, REJECTED, TIMED_OUT, CLIENT_TIMEOUT, PREEMPTED}  # every limit bites
    by_id = records.sort("request_id")
    for code in codes:
        fate = FATES[code]
        rows = by_id.filter(pl.Series(result.outcome == code))
        assert rows.height == int((result.outcome == code).sum())
        assert set(rows["outcome"].cast(pl.String).to_list()) == {fate.outcome}
        assert set(rows["error_kind"].cast(pl.String).to_list()) == {fate.error_kind}
        assert set(rows["error_subkind"].cast(pl.String).to_list()) == {fate.error_subkind}
        assert set(rows["http_status"].to_list()) == {fate.http_status}
        assert rows["failed"].to_list() == [code != OK] * rows.height
    failed = {FATES[k].error_kind: 0 for k in codes if k != OK}
    for k in result.outcome[result.outcome != OK].tolist():
        failed[FATES[k].error_kind] += 1
    assert summary.failures_by_kind == failed
    assert FATES[PREEMPTED].error_kind == "http_5xx"
    assert (FATES[CLIENT_TIMEOUT].error_kind, FATES[CLIENT_TIMEOUT].error_subkind) == (
        "timeout",
        "total",
    )


def test_per_request_columns_come_from_the_engine(tmp_path: Path) -> None:
    result, records, _ = _overloaded(tmp_path, token_times=True)
    by_id = records.sort("request_id")
    arrival = by_id["arrival_s"].to_numpy()
    first = by_id["first_s"].fill_null(np.nan).to_numpy()
    end = by_id["end_s"].fill_null(np.nan).to_numpy()
    np.testing.assert_array_equal(first, result.first)
    np.testing.assert_array_equal(end, result.end)
    np.testing.assert_array_equal(by_id["preemptions"].to_numpy(), result.preemptions)
    queue = by_id["queue_s"].fill_null(np.nan).to_numpy()
    np.testing.assert_allclose(queue, result.admitted - arrival, equal_nan=True)
    ok = result.outcome == OK
    ttft = by_id["ttft_s"].fill_null(np.nan).to_numpy()
    np.testing.assert_allclose(ttft[ok], (result.first - arrival)[ok])
    for i in np.flatnonzero(ok)[:50].tolist() + np.flatnonzero(~ok)[:20].tolist():
        times = result.token_times(i)
        assert by_id["token_s"][i].to_list() == times.tolist()
        if ok[i]:
            assert times[0] == result.first[i]
            assert times[-1] == result.end[i]
            assert by_id["output_tokens_achieved"][i] == times.size
        if times.size > 1:
            assert by_id["max_gap_s"][i] == pytest.approx(float(np.diff(times).max()))


def test_token_times_are_opt_in_and_the_summary_says_so(tmp_path: Path) -> None:
    _, with_times, kept = _overloaded(tmp_path / "with", token_times=True)
    _, without, lean = _overloaded(tmp_path / "without", token_times=False)
    assert kept.token_times
    assert not lean.token_times
    assert "token_s" in pl.read_parquet_schema(tmp_path / "with" / "requests.parquet")
    assert "token_s" not in pl.read_parquet_schema(tmp_path / "without" / "requests.parquet")
    ok = with_times.filter(pl.col("outcome") == "ok")
    assert kept.metrics["itl_s"].count == int((ok["output_tokens_achieved"] - 1).sum())
    assert lean.metrics["itl_s"].count == 0
    for name in ("ttft_s", "tpot_s", "e2e_s"):  # the rest does not depend on keeping them
        assert kept.metrics[name] == lean.metrics[name]
    assert kept.counts == lean.counts
    assert without.drop("chunk_s", "chunk_tokens", "itl_s").equals(
        with_times.drop("token_s", "chunk_s", "chunk_tokens", "itl_s")
    )


def test_the_summary_reads_only_its_columns(tmp_path: Path) -> None:
    """The narrow view simulate summarises gives the summary of the whole table, and
    categorical columns the summary of text ones."""
    _overloaded(tmp_path, token_times=True)
    whole = RunDir(tmp_path).records()
    assert whole is not None
    slo = SLO(ttft=1.0, tpot=0.05, e2e=20.0)
    expected = summarize(whole, slo=slo)
    assert summarize(summary_view(whole), slo=slo) == expected
    text = whole.with_columns(cs.categorical().cast(pl.String))
    assert summarize(text, slo=slo) == expected
    manifest = Manifest(kind="simulate", scheduled=whole.height)
    assert vllm_result(expected, manifest, summary_view(whole)) == vllm_result(
        expected, manifest, whole
    )


def test_progress_reaches_every_request(tmp_path: Path) -> None:
    table = workload(np.linspace(0, 20, 200).tolist(), input_tokens=100, output_tokens=20)
    seen: list[int] = []
    engine = Engine(EngineConfig(max_num_seqs=8), LinearCost())
    simulate(table, engine, tmp_path / "run", progress=seen.append)
    assert seen
    assert seen[-1] == 200
    assert seen == sorted(seen)


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
