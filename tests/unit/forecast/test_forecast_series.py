"""Per-interval series: counts, means, carry-forward of empty intervals, whole intervals only."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from burstlab.forecast.series import (
    IntervalSeries,
    carry_forward,
    granularity_label,
    interval_count,
    interval_series,
    span_text,
)


def table(arrivals: list[float], inputs: list[int], outputs: list[int]) -> pl.DataFrame:
    return pl.DataFrame(
        {"arrival_s": arrivals, "input_tokens": inputs, "output_tokens": outputs},
        schema={"arrival_s": pl.Float64, "input_tokens": pl.Int32, "output_tokens": pl.Int32},
    )


def test_counts_means_and_token_totals_per_interval() -> None:
    # [0, 60): three requests; [60, 120): one (60.0 starts the interval); [120, 180): two
    t = table(
        [0.5, 1.0, 59.9, 60.0, 130.0, 179.0],
        [10, 20, 30, 100, 7, 9],
        [1, 2, 3, 50, 4, 6],
    )
    s = interval_series(t, 60)
    assert s.granularity_s == 60
    assert s.size == 3
    assert s.span_s == 179.0
    np.testing.assert_array_equal(s.start_s, [0.0, 60.0, 120.0])
    np.testing.assert_array_equal(s.values["requests"], [3, 1, 2])
    np.testing.assert_allclose(s.values["input_mean"], [20, 100, 8])
    np.testing.assert_allclose(s.values["output_mean"], [2, 50, 5])
    np.testing.assert_array_equal(s.values["tokens"], [66, 150, 26])
    for name in ("requests", "input_mean", "output_mean", "tokens"):
        assert s.values[name].dtype == np.float64
        assert s.valid[name].all()


def test_empty_intervals_carry_the_last_mean_forward_and_are_not_valid() -> None:
    # nothing in [0, 60) and [120, 240); requests in [60, 120) and [240, 300)
    t = table([70.0, 80.0, 250.0, 299.0], [10, 30, 5, 5], [4, 8, 1, 3])
    s = interval_series(t, 60)
    assert s.size == 5
    np.testing.assert_array_equal(s.values["requests"], [0, 2, 0, 0, 2])
    np.testing.assert_array_equal(s.values["tokens"], [0, 52, 0, 0, 14])
    # before the first request: 0; then the last real mean until the next one
    np.testing.assert_allclose(s.values["input_mean"], [0, 20, 20, 20, 5])
    np.testing.assert_allclose(s.values["output_mean"], [0, 6, 6, 6, 2])
    np.testing.assert_array_equal(s.valid["input_mean"], [False, True, False, False, True])
    np.testing.assert_array_equal(s.valid["output_mean"], [False, True, False, False, True])
    assert s.valid["requests"].all()  # a count of 0 is a real observation
    assert s.valid["tokens"].all()


def test_carry_forward_uses_only_the_past() -> None:
    values = np.array([5.0, 1.0, 2.0, 9.0, 3.0, 4.0])
    valid = np.array([False, True, False, False, True, False])
    np.testing.assert_array_equal(carry_forward(values, valid), [0, 1, 1, 1, 3, 3])
    np.testing.assert_array_equal(carry_forward(values, np.zeros(6, bool)), np.zeros(6))


def test_only_whole_intervals_are_kept() -> None:
    # 59 min 58 s covers 60 whole minutes (the last one 97% covered)
    assert interval_count(3598, 60) == 60
    assert interval_count(3540, 60) == 59  # 59 min exactly: 59 intervals
    assert interval_count(3569, 60) == 59  # the 60th minute only 48% covered
    assert interval_count(56, 60) == 0
    assert interval_count(0, 60) == 0
    # arrivals in a last, partly covered interval are dropped, not counted in a short one
    t = table([1.0, 50.0, 61.0, 100.0], [1, 1, 1, 1], [1, 1, 1, 1])
    s = interval_series(t, 60)
    assert s.size == 1
    np.testing.assert_array_equal(s.values["requests"], [2])
    assert interval_series(t, 120).size == 0
    assert interval_series(t, 50).size == 2  # 100 s covers two intervals of 50 s
    np.testing.assert_array_equal(interval_series(t, 50).values["requests"], [1, 2])


def test_intervals_of_every_granularity_line_up_at_zero() -> None:
    rng = np.random.default_rng(4)
    arrivals = np.append(np.sort(rng.uniform(0, 36_000, 4_999)), 36_000.0)  # 10 h exactly
    t = table(list(arrivals), [1] * 5_000, [2] * 5_000)
    fine = interval_series(t, 60).values["requests"]
    coarse = interval_series(t, 600).values["requests"]
    assert (fine.size, coarse.size) == (600, 60)
    np.testing.assert_array_equal(fine.reshape(-1, 10).sum(axis=1), coarse)
    assert interval_series(t, 600).values["tokens"].sum() == 3 * coarse.sum()


def test_empty_table_and_bad_granularity() -> None:
    empty = interval_series(table([], [], []), 60)
    assert empty.size == 0
    with pytest.raises(ValueError, match="positive"):
        interval_series(table([1.0], [1], [1]), 0)


def test_from_sums_without_a_table() -> None:
    s = IntervalSeries.from_sums(
        600, np.array([2, 0, 4]), np.array([10, 0, 8]), np.array([4, 0, 4])
    )
    assert s.span_s == 1800
    np.testing.assert_allclose(s.values["input_mean"], [5, 5, 2])
    np.testing.assert_array_equal(s.valid["input_mean"], [True, False, True])


def test_granularity_label_and_span_text() -> None:
    assert granularity_label(60) == "1m"
    assert granularity_label(600) == "10m"
    assert granularity_label(3600) == "60m"
    assert granularity_label(7200) == "120m"
    assert granularity_label(45) == "45s"
    assert granularity_label(90) == "90s"
    assert span_text(3480) == "58 min"
    assert span_text(5 * 3600) == "5.0 h"
    assert span_text(86_400) == "24.0 h"
    assert span_text(30 * 86_400) == "30.0 days"
    assert span_text(14 * 86_400 - 20) == "13.99 days"  # not rounded up to two weeks


def test_an_unsorted_table_gives_the_same_series_as_sorted() -> None:
    arrivals = [130.0, 0.5, 179.0, 60.0, 59.9, 1.0]
    t = table(arrivals, [7, 10, 9, 100, 30, 20], [4, 1, 6, 50, 3, 2])
    s = interval_series(t, 60)
    assert s.span_s == 179.0
    np.testing.assert_array_equal(s.values["requests"], [3, 1, 2])
    np.testing.assert_allclose(s.values["input_mean"], [20, 100, 8])
