"""A simulated run directory reads like a benchmark run: records, summary, report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from test_engine import LinearCost

from burstlab.report.bench import render_run
from burstlab.sim.engine import Engine, EngineConfig
from burstlab.sim.simulate import simulate
from burstlab.trace.readers import read_trace
from burstlab.trace.records import load_records
from helpers import workload


def test_simulated_run_directory(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    arrivals = np.sort(rng.uniform(0, 60, 400)).tolist()
    table = workload(arrivals, input_tokens=300, output_tokens=50)
    engine = Engine(EngineConfig(max_num_seqs=4, queue_cap=20), LinearCost())
    result, summary = simulate(table, engine, tmp_path / "run")
    records = load_records(tmp_path / "run")
    assert records.height == 400
    c = summary["counts"]
    assert c["ok"] + c["failed"] == 400
    assert summary["failures_by_kind"].get("http_429", 0) == int((result.outcome == 1).sum())
    ok = records.filter(pl.col("outcome") == "ok")
    assert (ok["output_tokens_achieved"] == 50).all()
    assert (ok["schedule_lag_s"] == 0).all()
    assert summary["burst"]["burst"]["requests"] > 0
    for name in ("run.json", "schedule.parquet", "telemetry.parquet", "summary.json"):
        assert (tmp_path / "run" / name).exists()
    html = render_run(tmp_path / "run").read_text()
    assert "burstlab simulate report" in html
    assert "Simulated engine over time" in html
    trace, _ = read_trace(tmp_path / "run" / "records.jsonl")
    assert trace.height == 400
