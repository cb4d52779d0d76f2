"""A large run's figures draw a bounded sample of its requests and telemetry; counts use all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from burstlab.report import run_figures, run_loader
from burstlab.report.run import render_run
from burstlab.report.run_loader import figure_sample, load_run
from burstlab.results.rundir import RunDir
from burstlab.sim.engine import Engine, EngineConfig
from burstlab.sim.simulate import simulate
from support.frames import workload
from support.sim import LinearCost


@pytest.fixture(scope="module")
def big_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bounded") / "run"
    arrivals = np.sort(np.random.default_rng(2).uniform(0, 120, 900)).tolist()
    engine = Engine(EngineConfig(max_num_seqs=8, queue_cap=30), LinearCost())
    simulate(workload(arrivals, input_tokens=200, output_tokens=30), engine, path)
    return path


def test_figure_sample_is_every_kth_request(monkeypatch: pytest.MonkeyPatch) -> None:
    table = pl.DataFrame({"arrival_s": np.arange(1000.0)})
    assert figure_sample(table) is None  # small enough as it is
    monkeypatch.setattr(run_loader, "FIGURE_REQUESTS", 300)
    sample = figure_sample(table)
    assert sample is not None
    assert sample.height <= 300
    assert sample["arrival_s"].to_list() == list(np.arange(0.0, 1000.0, 4.0))


@pytest.mark.slow
def test_large_runs_draw_a_bounded_sample(big_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_loader, "FIGURE_REQUESTS", 100)
    monkeypatch.setattr(run_loader, "TELEMETRY_ROWS", 40)
    seen: dict[str, int] = {}

    def spy(name: str, which: int) -> None:
        real = getattr(run_figures, name)

        def wrapped(*args: Any, **kwargs: Any) -> bytes | None:
            seen[name] = args[which].height
            return real(*args, **kwargs)  # type: ignore[no-any-return]

        monkeypatch.setattr(run_figures, name, wrapped)

    for name in ("latency_cdfs", "lag_histogram", "lengths_scatter", "failures_over_time"):
        spy(name, 0)
    spy("latency_over_time", 2)
    html = render_run(big_run).read_text()
    assert seen["failures_over_time"] == 900  # counts per window use every request
    for name in ("latency_cdfs", "latency_over_time"):
        assert seen[name] <= 100, name
    # the simulated client is perfect: no schedule lag, every token it asked for
    assert "lag_histogram" not in seen
    assert "lengths_scatter" not in seen
    assert "drawn from 100 of the 900 requests" in html
    run = load_run(big_run)
    steps = RunDir(big_run).telemetry_rows()
    assert steps > 40
    assert run.telemetry is not None
    assert run.telemetry.height <= 40
    assert any("telemetry" in note for note in run.notes)
    full = RunDir(big_run).telemetry()
    assert full is not None
    assert full.height == steps
    every = -(-steps // 40)
    assert run.telemetry.equals(full.gather_every(every))
