"""Replay windows and scaling, fidelity figures, and exports read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from burstlab import read_trace
from burstlab.core.errors import InputError
from burstlab.trace.schema import conform, validate
from burstlab.workload.exports import export, mooncake_hash_ids
from burstlab.workload.fidelity import fidelity, reference
from burstlab.workload.replay import ReplaySpec, busiest_window, replay, speedup_for


def synthetic(n: int = 50_000, seed: int = 0) -> pl.DataFrame:
    """A canonical table with Gamma(0.5) arrivals, two models, a few sessions."""
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.gamma(0.5, 0.4, n))
    arrival -= arrival[0]
    in_session = rng.random(n) < 0.1
    ids = rng.integers(0, n // 20, n).astype(str).tolist()
    session = [s if keep else None for s, keep in zip(ids, in_session, strict=True)]
    table = pl.DataFrame(
        {
            "arrival_s": arrival,
            "model": pl.Series(np.where(rng.random(n) < 0.8, "ChatGPT", "GPT-4")),
            "log_type": pl.Series(np.where(in_session, "conversation", "api")),
            "session_id": pl.Series(session, dtype=pl.String),
            "turn": pl.Series([None] * n, dtype=pl.Int32),
            "input_tokens": rng.integers(1, 3000, n).astype(np.int32),
            "output_tokens": rng.integers(0, 800, n).astype(np.int32),
            "failed": np.zeros(n, dtype=bool),
            "elapsed_s": pl.Series([None] * n, dtype=pl.Float64),
        }
    ).with_columns(
        turn=pl.when(pl.col("session_id").is_not_null())
        .then(pl.int_range(pl.len()).over("session_id"))
        .cast(pl.Int32),
        failed=pl.col("output_tokens") == 0,
    )
    table = conform(table).collect()
    validate(table)
    return table


def test_rps_hit_exactly_and_cv_unchanged() -> None:
    table = synthetic()
    for rps in (0.5, 7.0, 300.0):
        work = replay(table, ReplaySpec(rps=rps))
        arrival = work["arrival_s"].to_numpy()
        assert arrival.size / (arrival[-1] - arrival[0]) == pytest.approx(rps, rel=0.005)
        report = fidelity(
            reference(table), work, time_scale=speedup_for(table, ReplaySpec(rps=rps))
        )
        assert report.cv.workload == pytest.approx(report.cv.source, rel=0.01)
        assert report.ks_gaps.workload is not None
        assert report.ks_gaps.workload < 0.01
        assert report.window_rate_error is not None
        assert report.window_rate_error < 1e-6
        for key, stat in report.idc.items():
            if stat.source is not None:
                assert stat.workload == pytest.approx(stat.source, rel=0.02), key
        assert report.verdict.startswith("faithful"), report.verdict
        validate(work)


@pytest.mark.parametrize("tick", [None, 1.0])
@pytest.mark.parametrize("speed", [0.5, 2.0, 7.0])
def test_a_perfect_copy_reads_as_one_at_any_speed(tick: float | None, speed: float) -> None:
    table = synthetic(20_000)
    if tick:
        table = table.with_columns(pl.col("arrival_s").floor())
    work = table.with_columns(pl.col("arrival_s") / speed)
    report = fidelity(reference(table), work, time_scale=speed)
    assert report.window_rate_error == 0.0
    assert report.ks_gaps.workload is not None
    assert report.ks_gaps.workload <= 0.002  # the reference keeps 1,001 quantiles
    assert report.ks_minute_rate.workload is not None
    assert report.ks_minute_rate.workload <= 0.002
    assert report.mean_rps.error == pytest.approx(0.0, abs=1e-9)
    for stat in report.idc.values():
        assert stat.workload == stat.source


def test_speedup_convention_two_is_twice_as_fast() -> None:
    table = synthetic(1000)
    work = replay(table, ReplaySpec(speedup=2))
    assert work["arrival_s"][-1] == pytest.approx(table["arrival_s"][-1] / 2)


def test_windows_filters_and_limits() -> None:
    table = synthetic()
    work = replay(table, ReplaySpec(start_s=100, end_s=500, model="GPT-4", limit=50))
    assert work.height == 50
    assert set(work["model"].cast(pl.String).to_list()) == {"GPT-4"}
    assert work["arrival_s"][0] >= 0
    busy = replay(table, ReplaySpec(busiest_s=60))
    assert busy["arrival_s"].max() < 60  # type: ignore[operator]
    arrival = table["arrival_s"].to_numpy()
    start = busiest_window(arrival, 60)
    best = max(int(((arrival >= s) & (arrival < s + 60)).sum()) for s in arrival[::97])
    assert busy.height >= best
    assert busy.height == int(((arrival >= start) & (arrival < start + 60)).sum())
    day = replay(table, ReplaySpec(day=0))
    assert day.height == table.filter(pl.col("arrival_s") < 86_400).height


def test_bad_specs() -> None:
    table = synthetic(1000)
    with pytest.raises(ValueError, match="--rps or --speedup"):
        ReplaySpec(rps=1, speedup=2)
    with pytest.raises(ValueError, match="one of"):
        ReplaySpec(day=1, busiest_s=60)
    with pytest.raises(ValueError, match="greater than 0"):
        ReplaySpec(rps=0)
    with pytest.raises(InputError, match="select 0 requests"):
        replay(table, ReplaySpec(start_s=1e9))


def test_exports_read_back(tmp_path: Path) -> None:
    table = synthetic(3000)
    for suffix in (".parquet", ".csv", ".jsonl"):
        back, _ = read_trace(export(table, tmp_path / f"w{suffix}"))
        assert back.equals(table)
    back, report = read_trace(export(table, tmp_path / "b.csv", to="burstgpt"))
    assert report.format == "burstgpt"
    assert report.variant == "v3 (8 columns)"
    assert back["arrival_s"].to_list() == pytest.approx(table["arrival_s"].to_list())
    # a failed request asks for 1 token (servers reject 0); 'Failed' keeps the mark
    assert table["failed"].sum() > 0
    assert back["failed"].equals(table["failed"])
    assert back["output_tokens"].equals(table["output_tokens"].clip(1))
    rest = ("arrival_s", "elapsed_s", "output_tokens")
    assert back.drop(rest).equals(table.drop(rest))
    back, report = read_trace(export(table, tmp_path / "m.jsonl", to="mooncake"))
    assert report.format == "mooncake"
    assert back["failed"].equals(table["failed"])
    assert back["session_id"].equals(table["session_id"])
    assert back["input_tokens"].equals(table["input_tokens"])  # per-turn inputs: no deltas
    assert np.allclose(back["arrival_s"].to_numpy(), table["arrival_s"].to_numpy(), atol=6e-4)
    blocks = back["hash_ids"].list.len().to_numpy()
    assert (blocks == -(-table["input_tokens"].to_numpy() // 512)).all()


def test_mooncake_blocks_shared_within_sessions() -> None:
    table = pl.DataFrame(
        {"session_id": ["a", None, "a", "b"], "input_tokens": [1100, 600, 1500, 10]}
    )
    ids = mooncake_hash_ids(table)
    assert ids[0] == [0, 1, 2]
    assert ids[1] == [3, 4]
    assert ids[2][:2] == [0, 1]  # two full blocks of turn 0 are turn 1's prefix
    assert len(ids[2]) == 3
    assert ids[3] == [6]
