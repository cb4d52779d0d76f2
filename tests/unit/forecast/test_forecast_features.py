"""Features: exact lag, rolling, seasonal and clock values; no future value reaches a row."""

from __future__ import annotations

import math

import numpy as np
import pytest

from burstlab.forecast.features import (
    BASE,
    feature_matrix,
    first_row,
    regression_columns,
    seasonal_lag,
)

HALF_DAY = 43_200  # two intervals a day, 14 a week: seasonal lags fit in a tiny array


def column(values: np.ndarray, name: str, **kw: int | float) -> np.ndarray:
    kw = {"granularity_s": HALF_DAY, **kw}
    f = feature_matrix(values, **kw)  # type: ignore[arg-type]
    return f.columns((name,))[:, 0]


def test_lags_and_rolling_statistics_end_horizon_intervals_back() -> None:
    values = np.arange(10, dtype=float) ** 2  # 0 1 4 9 16 25 36 49 64 81
    f = feature_matrix(values, granularity_s=HALF_DAY, horizon=1, lags=2, window=3)
    assert f.names == (
        "lag_1", "lag_2", "roll_mean", "roll_std", "day_lag", "week_lag",
        "hour_sin", "hour_cos", "dow_sin", "dow_cos",
    )  # fmt: skip
    nan = math.nan
    np.testing.assert_array_equal(
        f.columns(("lag_1",))[:, 0], [nan, 0, 1, 4, 9, 16, 25, 36, 49, 64]
    )
    np.testing.assert_array_equal(
        f.columns(("lag_2",))[:, 0], [nan, nan, 0, 1, 4, 9, 16, 25, 36, 49]
    )
    # row 5 (horizon 1): the window 2, 3, 4 -> values 4, 9, 16
    mean = f.columns(("roll_mean",))[:, 0]
    std = f.columns(("roll_std",))[:, 0]
    assert np.isnan(mean[:3]).all()
    assert np.isnan(std[:3]).all()
    for t in range(3, 10):
        window = values[t - 3 : t]
        assert mean[t] == pytest.approx(window.mean())
        assert std[t] == pytest.approx(window.std())  # population std (ddof 0)
    assert mean[5] == pytest.approx(29 / 3)

    # horizon 3: everything moves two more intervals back
    lag3 = column(values, "lag_1", horizon=3, lags=2, window=3)
    np.testing.assert_array_equal(lag3, [nan, nan, nan, 0, 1, 4, 9, 16, 25, 36])
    mean3 = column(values, "roll_mean", horizon=3, lags=2, window=3)
    assert np.isnan(mean3[:5]).all()
    assert mean3[7] == pytest.approx(np.mean(values[2:5]))


def test_first_row_is_where_lags_and_rolling_statistics_are_all_defined() -> None:
    values = np.arange(1.0, 31.0)
    for horizon, lags, window in ((1, 3, 6), (1, 8, 4), (3, 3, 6), (2, 1, 2)):
        f = feature_matrix(values, granularity_s=600, horizon=horizon, lags=lags, window=window)
        x = f.columns(regression_columns(lags))
        lo = first_row(horizon=horizon, lags=lags, window=window)
        assert np.isfinite(x[lo:]).all()
        assert np.isnan(x[lo - 1]).any()
    assert regression_columns(2) == ("lag_1", "lag_2", *BASE)


def test_seasonal_lags_are_the_same_interval_of_an_earlier_day_or_week() -> None:
    values = np.arange(20, dtype=float) + 100
    nan = math.nan
    # a day is 2 intervals: horizon 1 -> 2 back; horizon 3 -> 4 back (two days)
    np.testing.assert_array_equal(column(values, "day_lag")[:5], [nan, nan, 100, 101, 102])
    np.testing.assert_array_equal(column(values, "day_lag", horizon=3)[:6], [nan] * 4 + [100, 101])
    # a week is 14 intervals
    week = column(values, "week_lag")
    assert np.isnan(week[:14]).all()
    np.testing.assert_array_equal(week[14:], values[:6])
    assert seasonal_lag(144, 1) == 144
    assert seasonal_lag(144, 145) == 288
    assert seasonal_lag(None, 1) is None
    # 7 minutes does not divide a day: no day lag at all (a week it does divide)
    seven = feature_matrix(np.arange(300.0), granularity_s=420)
    assert np.isnan(seven.columns(("day_lag",))).all()
    assert np.isnan(seven.columns(("week_lag",))).all()  # 1440 intervals back: none here


def test_clock_features_place_each_interval_start_on_the_day_and_week() -> None:
    values = np.zeros(16)
    # arrival_s = 0 is 06:00 on a Saturday; intervals start at 06:00 and 18:00
    kw = {"day_offset_s": 21_600.0, "weekday0": 5}
    np.testing.assert_allclose(column(values, "hour_sin", **kw), [1, -1] * 8, atol=1e-12)
    np.testing.assert_allclose(column(values, "hour_cos", **kw), [0, 0] * 8, atol=1e-12)
    weekday = np.array([5, 5, 6, 6, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5])
    np.testing.assert_allclose(column(values, "dow_sin", **kw), np.sin(2 * np.pi * weekday / 7))
    np.testing.assert_allclose(column(values, "dow_cos", **kw), np.cos(2 * np.pi * weekday / 7))
    # the default clock: midnight of a Monday
    np.testing.assert_allclose(column(values, "hour_cos")[:2], [1, -1], atol=1e-12)
    np.testing.assert_allclose(column(values, "dow_sin")[:2], [0, 0], atol=1e-12)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="horizon"):
        feature_matrix(np.zeros(10), granularity_s=60, horizon=0)
    with pytest.raises(ValueError, match="window"):
        feature_matrix(np.zeros(10), granularity_s=60, window=1)
    short = feature_matrix(np.arange(3.0), granularity_s=60, window=6)  # shorter than the window
    assert np.isnan(short.columns(("roll_mean", "roll_std"))).all()


@pytest.mark.parametrize("horizon", [1, 3])
@pytest.mark.parametrize("granularity_s", [3600, 600])
def test_no_future_value_reaches_a_feature(horizon: int, granularity_s: int) -> None:
    """Row t depends only on values[: t - horizon + 1]: changing every later value
    (the target itself included) leaves it as it was, to the bit."""
    rng = np.random.default_rng(horizon)
    n = 2 * 7 * 24 * 3600 // granularity_s if granularity_s == 3600 else 1_200  # two weeks
    values = rng.gamma(2.0, 10.0, n)
    kw = {"granularity_s": granularity_s, "horizon": horizon, "lags": 4, "window": 5}
    base = feature_matrix(values, **kw).matrix
    for t in rng.choice(np.arange(horizon, n), 40, replace=False):
        cut = t - horizon + 1
        changed = values.copy()
        changed[cut:] = rng.gamma(2.0, 1000.0, n - cut)
        after = feature_matrix(changed, **kw).matrix
        np.testing.assert_array_equal(after[: t + 1], base[: t + 1])
        # and the test can see a change: moving the newest allowed value moves lag_1
        nudged = values.copy()
        nudged[cut - 1] += 1.0
        assert feature_matrix(nudged, **kw).matrix[t, 0] == values[cut - 1] + 1.0
