"""Periodicity, conversations and failures on tables with known answers."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from burstlab.analyze.burstiness import window_series
from burstlab.analyze.conversations import conversations
from burstlab.analyze.failures import failures
from burstlab.analyze.periodicity import clock_of, periodicity
from burstlab.trace.readers import LoadReport

DAY = 86_400.0


def cyclic_arrivals(days: int, seed: int = 0) -> np.ndarray:
    """Thinned Poisson with rate 0.2 * (1 + 0.8 sin(2 pi t / day)): peak at 06:00."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, days * DAY, int(0.4 * days * DAY)))
    keep = rng.random(t.size) < (1 + 0.8 * np.sin(2 * np.pi * t / DAY)) / 2
    return t[keep]


def table_of(arrival: np.ndarray, **cols: object) -> pl.DataFrame:
    n = arrival.size
    return pl.DataFrame(
        {"arrival_s": arrival, "input_tokens": np.full(n, 10), "output_tokens": np.full(n, 5)}
        | cols
    )


def test_daily_period_and_hour_profile() -> None:
    result = periodicity(table_of(cyclic_arrivals(14)), weekday0=0)
    assert result.dominant_periods_s[0] == pytest.approx(DAY, abs=600)
    assert result.hour_requests is not None
    assert int(np.argmax(result.hour_requests)) in (5, 6)
    assert result.weekday_requests is not None
    assert sum(result.weekday_requests) == sum(result.hour_requests)


def test_short_trace_says_what_it_cannot_do() -> None:
    result = periodicity(table_of(np.linspace(0, 3600, 500)))
    assert result.hour_requests is None
    assert result.note is not None
    assert "at least one day" in result.note


def test_clock_from_load_reports() -> None:
    def report(fmt: str, origin: str) -> LoadReport:
        return LoadReport(
            source="x", format=fmt, kind="csv", rows_read=1, rows_kept=1, origin=origin
        )

    assert clock_of(report("azure", "2023-11-16 18:15:46.680590")) == (
        pytest.approx(18 * 3600 + 15 * 60 + 46.68059),
        3,
    )
    assert clock_of(report("burstgpt", "86405.0 s")) == (5.0, None)
    assert clock_of(report("mooncake", "0.0 ms")) == (0.0, None)
    assert clock_of(None) == (0.0, None)


def test_conversations_known_answers() -> None:
    table = pl.DataFrame(
        {
            "arrival_s": [0.0, 1.0, 5.0, 6.0, 30.0, 40.0],
            "session_id": ["a", "b", "a", None, "a", "c"],
            "turn": [0, 0, 1, None, 2, 0],
            "input_tokens": [10, 20, 30, 5, 50, 40],
        }
    )
    result = conversations(table)
    assert result is not None
    assert (result.sessions, result.turns_max) == (3, 3)
    assert result.single_turn_share == pytest.approx(2 / 3)
    assert result.gap_median_s == pytest.approx(15.0)  # gaps 5 and 25
    assert result.input_median_by_turn == [20.0, 30.0, 50.0]
    assert conversations(table.with_columns(session_id=pl.lit(None, pl.String))) is None


def test_failures_follow_load() -> None:
    rng = np.random.default_rng(3)
    rates = np.where(np.arange(40) % 2 == 0, 1.0, 5.0)  # alternating quiet and busy windows
    arrival = np.concatenate(
        [w * 100 + np.sort(rng.uniform(0, 100, int(r * 100))) for w, r in enumerate(rates)]
    )
    busy = (arrival // 100).astype(int) % 2 == 1
    failed = rng.random(arrival.size) < np.where(busy, 0.3, 0.02)
    table = table_of(
        arrival, failed=failed, model=["m"] * arrival.size, log_type=["api"] * arrival.size
    )
    result = failures(table, window_series(arrival, 100.0))
    assert result.failure_rate == pytest.approx(failed.mean())
    assert result.corr_with_rate is not None
    assert result.corr_with_rate > 0.9
    assert result.by_class[0].requests == arrival.size
