"""Dominant periods: detrended, de-duplicated, with a significance figure."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl
import pytest

from burstlab.analyze.periodicity import detrend, dominant_periods, periodicity

DAY = 86_400.0


def thinned(days: int, rate: Callable[[np.ndarray], np.ndarray], seed: int = 0) -> np.ndarray:
    """Poisson arrivals at up to 0.4/s thinned by ``rate(t)`` in [0, 1]."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, days * DAY, int(0.4 * days * DAY)))
    return t[rng.random(t.size) < rate(t)]


def daily(t: np.ndarray) -> np.ndarray:
    return (1 + 0.8 * np.sin(2 * np.pi * t / DAY)) / 2


def weekly(t: np.ndarray) -> np.ndarray:
    """The daily cycle, with weekends (days 5 and 6) at 30%."""
    return daily(t) * np.where((t // DAY) % 7 >= 5, 0.3, 1.0)


def table_of(arrival: np.ndarray) -> pl.DataFrame:
    n = arrival.size
    return pl.DataFrame(
        {"arrival_s": arrival, "input_tokens": np.full(n, 10), "output_tokens": np.full(n, 5)}
    )


def test_detrend_removes_a_line_only() -> None:
    x = np.arange(100) * 3.0 + 7.0
    assert np.allclose(detrend(x), 0.0)
    wave = np.sin(np.arange(100) / 5)
    assert np.allclose(
        detrend(x + wave), wave - np.polyval(np.polyfit(np.arange(100), wave, 1), np.arange(100))
    )


def test_daily_cycle_counts_once() -> None:
    result = periodicity(table_of(thinned(14, daily)))
    assert [round(p.period_s / 3600) for p in result.periods] == [24]
    (period,) = result.periods
    assert period.significant
    assert period.p_value < 1e-10
    assert period.z == pytest.approx(period.acf * np.sqrt(14 * 144), rel=0.01)
    assert result.dominant_periods_s == [period.period_s]
    assert result.white_noise_band == pytest.approx(1.96 / np.sqrt(14 * 144), rel=0.01)


def test_week_and_day_found_without_their_multiples() -> None:
    result = periodicity(table_of(thinned(56, weekly)))
    hours = sorted(round(p.period_s / 3600) for p in result.periods)
    assert hours == [24, 168]
    assert all(p.significant for p in result.periods)


def test_growing_trace_still_shows_its_day() -> None:
    result = periodicity(table_of(thinned(21, lambda t: (0.2 + 0.8 * t / (21 * DAY)) * daily(t))))
    assert result.detrend == "linear"
    assert round(result.periods[0].period_s / 3600) == 24


def test_flat_trace_has_no_significant_period() -> None:
    result = periodicity(table_of(thinned(14, lambda t: np.full(t.size, 0.5))))
    assert not any(p.significant for p in result.periods)


def test_short_series_has_no_periods() -> None:
    assert dominant_periods(np.ones(5), 60.0) == []
