"""Calendar analyses on synthetic tables whose every cell is known."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl
import pytest

from burstlab.analyze import calendar as cal
from burstlab.analyze.calendar import calendar, origin_of, parse_origin
from burstlab.core.errors import InputError
from burstlab.trace.readers import LoadReport

DAY = 86_400.0
HOUR = 3600.0


def per_hour(weekday: np.ndarray, hour: np.ndarray) -> np.ndarray:
    """Requests in an hour: 2 + weekday, 5 more in office hours."""
    return 2 + weekday + 5 * ((hour >= 9) & (hour < 17))


def weekly_table(weeks: int, weekday0: int) -> pl.DataFrame:
    """Each hour's requests evenly spread from its start; one more at the very end."""
    slots = np.arange(weeks * 7 * 24)
    k = per_hour((weekday0 + slots // 24) % 7, slots % 24)
    start = np.repeat(slots * HOUR, k)
    j = np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k)
    arrival = np.append(start + j * HOUR / np.repeat(k, k), weeks * 7 * DAY)
    return pl.DataFrame(
        {
            "arrival_s": arrival,
            "input_tokens": np.full(arrival.size, 10),
            "output_tokens": np.full(arrival.size, 5),
        }
    )


def test_weekday_hour_and_weekly_profile_known_cells() -> None:
    result = calendar(weekly_table(3, weekday0=2), weekday0=2)
    assert result.note is None
    assert result.weekday_hour is not None
    assert result.weekly is not None
    cells = np.array(result.weekday_hour.requests_per_hour, dtype=float)
    expected = per_hour(np.arange(7)[:, None], np.arange(24)[None, :]).astype(float)
    expected[2, 0] += 1 / 3  # the last request opens a Wednesday 00:00 hour observed 0 s
    assert np.allclose(cells, expected)
    assert np.allclose(result.weekday_hour.hours_observed, 3.0)
    assert result.weekly.weeks == pytest.approx(3.0)
    assert np.allclose(np.array(result.weekly.mean, dtype=float), expected.ravel())
    low = np.array(result.weekly.low, dtype=float)
    assert np.array_equal(low, per_hour(np.arange(168) // 24, np.arange(168) % 24))
    assert result.weekly.high[2 * 24] == low[2 * 24]  # the partial hour is not a full one


def test_tokens_per_hour_known() -> None:
    table = weekly_table(3, weekday0=0)
    tokens = calendar(table, weekday0=0).tokens_per_hour
    mean_k = per_hour(np.arange(7)[:, None], np.arange(24)[None, :]).mean(axis=0)
    mean_k[0] += 1 / 21  # the closing request, Monday 00:00
    assert np.allclose(np.array(tokens.hour_input, dtype=float), 10 * mean_k)
    assert np.allclose(np.array(tokens.hour_output, dtype=float), 5 * mean_k)
    assert tokens.series_bin_s == HOUR
    assert tokens.series_start_s == 0.0
    assert tokens.series_input[:24] == list(10 * per_hour(np.zeros(24, int), np.arange(24)))
    assert sum(tokens.series_output) == 5 * table.height


def test_tokens_series_joins_hours_when_long(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cal, "MAX_SERIES_BINS", 100)
    table = weekly_table(3, weekday0=0)  # 504 hours and one more
    tokens = calendar(table, weekday0=0).tokens_per_hour
    assert tokens.series_bin_s == 6 * HOUR
    assert len(tokens.series_input) == 85
    assert sum(tokens.series_input) == 10 * table.height


def test_hourly_rate_boxes() -> None:
    # per minute: hour h of days 0 and 1 carries h + 1 requests, day 2 three times as many
    minutes = np.arange(3 * 24 * 60)
    hour = (minutes // 60) % 24
    count = (hour + 1) * np.where(minutes // 1440 == 2, 3, 1)
    j = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    arrival = np.repeat(minutes * 60.0, count) + j * 60.0 / np.repeat(count, count)
    n = arrival.size
    table = pl.DataFrame(
        {"arrival_s": arrival, "input_tokens": np.ones(n, int), "output_tokens": np.ones(n, int)}
    )
    result = calendar(table)
    rate = result.hourly_rate
    assert rate is not None
    assert rate.bin_s == 60.0
    assert rate.bins == [179] + [180] * 22 + [179]  # first and last minutes are partial
    for h, box in enumerate(rate.hours):
        assert box is not None
        assert (box.p5, box.p25, box.p50) == pytest.approx([(h + 1) / 60] * 3)
        assert (box.p75, box.p95) == pytest.approx([3 * (h + 1) / 60] * 2)
    assert result.weekday_hour is None
    assert result.note is not None
    assert "--origin" in result.note


def test_short_spans_say_why() -> None:
    week_less = calendar(weekly_table(1, 0).head(500), weekday0=0)
    assert week_less.weekday_hour is None
    assert week_less.weekly is None
    assert week_less.note is not None
    assert "at least a week" in week_less.note
    hour = pl.DataFrame(
        {"arrival_s": np.arange(50) * 60.0, "input_tokens": [1] * 50, "output_tokens": [1] * 50}
    )
    short = calendar(hour)
    assert short.hourly_rate is None
    assert short.note is not None
    assert "at least a day" in short.note
    assert short.tokens_per_hour.series_bin_s == 300.0
    assert short.tokens_per_hour.series_input == [5] * 10  # one a minute


def test_wall_clock_offset_moves_hours() -> None:
    # one request per minute for two days, starting at 18:00
    table = pl.DataFrame(
        {
            "arrival_s": np.arange(2 * 1440) * 60.0,
            "input_tokens": np.ones(2880, int),
            "output_tokens": np.ones(2880, int),
        }
    )
    result = calendar(table, day_offset_s=18 * HOUR)
    assert result.tokens_per_hour.series_start_s == 0.0
    expected = [60.0] * 24
    expected[17] = 120 / (1 + 59 / 60)  # the last hour is observed up to its last request
    assert result.tokens_per_hour.hour_input == pytest.approx(expected)
    shifted = calendar(table, day_offset_s=18 * HOUR + 30 * 60)
    assert shifted.tokens_per_hour.series_start_s == -30 * 60.0
    assert shifted.tokens_per_hour.series_input[:2] == [30, 60]


def test_origin_sources() -> None:
    def report(fmt: str, origin: str | None) -> LoadReport:
        return LoadReport(
            source="x", format=fmt, kind="csv", rows_read=1, rows_kept=1, origin=origin
        )

    given = datetime(2023, 1, 4, 6, 30)  # a Wednesday
    assert origin_of(report("burstgpt", "86405.0 s"), given) == (6.5 * HOUR, 2, given, "option")
    found = origin_of(report("azure", "2023-11-16 18:15:46.680590"))
    assert found[1:] == (3, datetime(2023, 11, 16, 18, 15, 46, 680590), "trace")
    assert found[0] == pytest.approx(18 * HOUR + 15 * 60 + 46.68059)
    assert origin_of(report("burstgpt", "86405.0 s")) == (5.0, None, None, None)
    assert origin_of(None) == (0.0, None, None, None)


def test_parse_origin() -> None:
    assert parse_origin("2023-01-02T00:00:00") == datetime(2023, 1, 2)
    assert parse_origin(" 2023-01-02 08:00") == datetime(2023, 1, 2, 8)
    with pytest.raises(InputError, match="--origin 'monday' is not an ISO datetime"):
        parse_origin("monday")
