"""GPU utilisation end to end: a simulation writes its series and summary, the report
shows the section and the figure, for one replica, a cluster and a cost model with
no datasheet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from burstlab.report import run_figures
from burstlab.report.run import render_run
from burstlab.results.rundir import RunDir
from burstlab.sim import presets
from burstlab.sim.cluster import Cluster, ClusterConfig
from burstlab.sim.cost import Linear
from burstlab.sim.engine import Engine, EngineConfig
from burstlab.sim.simulate import simulate
from burstlab.sim.utilisation import UTILISATION_COLUMNS
from support.frames import workload

PNG = b"\x89PNG"


def small_workload(n: int = 120, span_s: float = 30.0) -> pl.DataFrame:
    rng = np.random.default_rng(3)
    return workload(np.sort(rng.uniform(0, span_s, n)).tolist(), input_tokens=600, output_tokens=40)


@pytest.mark.slow
def test_a_roofline_run_has_its_series_summary_section_and_figure(tmp_path: Path) -> None:
    cost = presets.roofline("A100-80G", "Llama-2-7B")
    simulate(small_workload(), Engine(EngineConfig(), cost), tmp_path / "run")
    run = RunDir(tmp_path / "run")
    series = run.utilisation()
    assert series is not None
    assert series.columns == list(UTILISATION_COLUMNS)
    summary = run.summary()
    assert summary is not None
    assert summary.engine is not None
    u = summary.engine.utilisation
    assert u is not None
    assert u.basis == "roofline"
    assert 0 < u.busy_share <= 1
    # the roofline's efficiency factors bound what the GPU can be said to use
    assert u.mfu is not None
    assert 0 < u.mfu <= max(cost.mfu, cost.attn_mfu)
    assert u.mbu is not None
    assert 0 < u.mbu <= cost.mbu
    assert u.mfu_when_busy is not None
    assert u.mfu_when_busy >= u.mfu
    assert u.replicas == []
    # the series' bins hold the whole run's work: their mean over the bins' time
    # is the summary's mean over its (shorter) window
    assert float(series["mfu"].sum()) * u.bin_s == pytest.approx(u.mfu * u.window_s, rel=1e-9)
    html = render_run(tmp_path / "run").read_text()
    assert "<h2>GPU utilisation</h2>" in html
    assert "Simulated GPU utilisation per" in html
    assert "model FLOPs done over the GPU" in html


@pytest.mark.slow
def test_a_cluster_shows_each_replica(tmp_path: Path) -> None:
    cost = presets.roofline("A100-80G", "Llama-2-7B")
    cluster = Cluster(Engine(EngineConfig(), cost), ClusterConfig(replicas=2))
    simulate(small_workload(), cluster, tmp_path / "run")
    summary = RunDir(tmp_path / "run").summary()
    assert summary is not None
    assert summary.engine is not None
    u = summary.engine.utilisation
    assert u is not None
    assert [r.replica for r in u.replicas] == [0, 1]
    assert u.busy_share == pytest.approx(np.mean([r.busy_share for r in u.replicas]))
    assert u.peak_mfu is not None
    assert u.peak_mfu.replica in (0, 1)
    html = render_run(tmp_path / "run").read_text()
    assert "<th>replica</th><th>busy share</th><th>MFU</th><th>MBU</th>" in html
    assert "one line per replica" in html


@pytest.mark.slow
def test_a_linear_cost_model_gives_the_busy_share_alone(tmp_path: Path) -> None:
    cost = Linear(c0=0.01, c_prefill=1e-4, c_decode=2e-4)
    simulate(small_workload(), Engine(EngineConfig(), cost), tmp_path / "run")
    summary = RunDir(tmp_path / "run").summary()
    assert summary is not None
    assert summary.engine is not None
    u = summary.engine.utilisation
    assert u is not None
    assert u.basis == "busy_only"
    assert u.mfu is None
    assert u.peak_mbu is None
    html = render_run(tmp_path / "run").read_text()
    assert "MFU and MBU need a roofline cost model" in html


def series(replicas: int, bins: int, roofline: bool = True) -> pl.DataFrame:
    """A hand-made utilisation series: every replica, every 2-s bin."""
    rng = np.random.default_rng(replicas)
    n = replicas * bins
    starts = np.tile(np.arange(bins) * 2.0, replicas)
    shares = {c: rng.uniform(0, 1, n) for c in ("busy_share", "mfu", "mbu")}
    if not roofline:
        shares["mfu"] = shares["mbu"] = np.full(n, np.nan)
    table = pl.DataFrame(
        {
            "replica": np.repeat(np.arange(replicas), bins).astype(np.int32),
            "start_s": starts,
            "end_s": starts + 2.0,
            **shares,
        }
    )
    return table.with_columns(pl.col("mfu", "mbu").fill_nan(None))


@pytest.mark.parametrize(
    ("replicas", "roofline"), [(1, True), (1, False), (3, True), (3, False), (16, True)]
)
def test_the_figure_draws_every_shape(replicas: int, roofline: bool) -> None:
    made = run_figures.utilisation_figures(series(replicas, 200, roofline))
    assert len(made) == 1
    caption, png = made[0]
    assert png is not None
    assert png.startswith(PNG)
    assert "per 2-s bin" in caption
    assert ("MFU (model FLOPs" in caption) is roofline
    assert ("one line per replica" in caption) is (replicas > 1)


def test_a_long_series_is_drawn_in_groups_of_bins() -> None:
    """2,000 bins of 2 s: the figure's lines average groups of 8 (at most 250 steps)."""
    caption, png = run_figures.utilisation_figures(series(2, 2000))[0]
    assert png is not None
    assert "per 16-s bin" in caption


def test_no_series_is_no_figure() -> None:
    assert run_figures.utilisation_figures(None) == []
    assert run_figures.utilisation_figures(series(1, 5).clear()) == []
