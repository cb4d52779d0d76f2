"""Features for predicting one interval from the past, with no look-ahead.

Row ``t`` of a feature matrix describes target interval ``t`` with values
observed at least ``horizon`` intervals earlier, i.e. up to index
``t - horizon`` (a ``horizon`` of 1 predicts the next interval):

- ``lag_1 .. lag_k``: ``y[t - horizon], y[t - horizon - 1], ...``;
- ``roll_mean``, ``roll_std``: mean and standard deviation of the ``window``
  values ending at ``t - horizon``;
- ``day_lag``, ``week_lag``: the same interval one day (week) before, or the
  latest such interval at least ``horizon`` back, when the granularity divides
  the period (NaN before a period of history: XGBoost takes NaN as missing);
- ``hour_sin``, ``hour_cos``, ``dow_sin``, ``dow_cos``: the interval start's
  hour of day and day of week as points on a circle (known in advance, so not
  a leak). The clock is ``day_offset_s`` (time of day at ``arrival_s`` = 0)
  and ``weekday0`` (its weekday, 0 = Monday).

Entries that would reach before the first interval are NaN. Everything is
computed with shifts and sliding windows over whole arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from burstlab.forecast.series import DAY_S, WEEK_S

#: Columns every regression model uses (never NaN from :func:`first_row` on).
BASE = ("roll_mean", "roll_std", "hour_sin", "hour_cos", "dow_sin", "dow_cos")
SEASONAL = ("day_lag", "week_lag")


@dataclass(frozen=True, slots=True)
class Features:
    """A feature matrix (float64, one row per interval) and its column names."""

    matrix: np.ndarray
    names: tuple[str, ...]

    def columns(self, names: tuple[str, ...]) -> np.ndarray:
        """The submatrix of the named columns, in that order."""
        where = [self.names.index(n) for n in names]
        return self.matrix[:, where]


def first_row(*, horizon: int, lags: int, window: int) -> int:
    """The first target index whose lag and rolling features are all defined."""
    return horizon + max(lags, window) - 1


def shifted(values: np.ndarray, by: int) -> np.ndarray:
    """``out[t] = values[t - by]``; NaN where ``t - by < 0``."""
    out = np.full(values.size, np.nan)
    if by < values.size:
        out[by:] = values[: values.size - by]
    return out


def seasonal_lag(period: int | None, horizon: int) -> int | None:
    """Intervals back to the same interval of an earlier period, at least ``horizon`` back."""
    if period is None or period <= 0:
        return None
    return period * -(-horizon // period)


def period_intervals(period_s: int, granularity_s: int) -> int | None:
    """Intervals per period (day or week), or None when the granularity does not divide it."""
    return period_s // granularity_s if period_s % granularity_s == 0 else None


def feature_matrix(
    values: np.ndarray,
    *,
    granularity_s: int,
    horizon: int = 1,
    lags: int = 3,
    window: int = 6,
    day_offset_s: float = 0.0,
    weekday0: int = 0,
) -> Features:
    """The features of every interval of ``values`` (see the module docstring)."""
    if horizon < 1 or lags < 1 or window < 2:
        raise ValueError("horizon and lags must be >= 1 and window >= 2")
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    columns: dict[str, np.ndarray] = {}
    for j in range(lags):
        columns[f"lag_{j + 1}"] = shifted(values, horizon + j)
    mean = np.full(n, np.nan)
    std = np.full(n, np.nan)
    if n >= window:
        windows = sliding_window_view(values, window)  # row i covers i .. i + window - 1
        mean[window - 1 :] = windows.mean(axis=1)
        std[window - 1 :] = windows.std(axis=1)
    columns["roll_mean"] = shifted(mean, horizon)
    columns["roll_std"] = shifted(std, horizon)
    for name, period_s in (("day_lag", DAY_S), ("week_lag", WEEK_S)):
        lag = seasonal_lag(period_intervals(period_s, granularity_s), horizon)
        columns[name] = shifted(values, lag) if lag is not None else np.full(n, np.nan)
    clock = np.arange(n, dtype=np.float64) * granularity_s + day_offset_s
    day_phase = 2 * np.pi * (clock % DAY_S) / DAY_S
    week_phase = 2 * np.pi * (((clock // DAY_S) + weekday0) % 7) / 7
    columns["hour_sin"] = np.sin(day_phase)
    columns["hour_cos"] = np.cos(day_phase)
    columns["dow_sin"] = np.sin(week_phase)
    columns["dow_cos"] = np.cos(week_phase)
    names = tuple(columns)
    return Features(np.column_stack([columns[k] for k in names]), names)


def regression_columns(lags: int) -> tuple[str, ...]:
    """Columns of the linear model: lags, rolling statistics and the clock."""
    return (*(f"lag_{j + 1}" for j in range(lags)), *BASE)
