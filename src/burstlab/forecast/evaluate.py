"""Walk-forward evaluation and its two error measures.

Scores, over the intervals of the test span where the series is defined
(``y`` actual, ``ŷ`` predicted, ``ȳ`` the mean of the actuals scored):

- **NMAE** = ``Σ |y - ŷ| / Σ |y|``: absolute error as a share of the total
  (0.05 = predictions are off by 5% of the load, summed over intervals);
- **NMSE** = ``Σ (y - ŷ)² / Σ (y - ȳ)²``: squared error relative to the
  variance of the actuals (1.0 = no better than always predicting ``ȳ``,
  which the model does not know in advance; below 1 is skill).

Both are None where the denominator is 0.

Walk-forward: the test span is cut into blocks. At each block boundary ``b``
the fitted models (``linear``, ``xgboost``) are refitted on an expanding
window, every earlier target ``j`` with ``j <= b - horizon``, i.e. every
target already observed when the block's first prediction is made; they then
predict the whole block. Inside a block each prediction still uses only
features from values at least ``horizon`` intervals before its target, so no
future value ever reaches a feature or a training row. Refitting at every
step would be exact but slow (306,720 one-minute intervals in 213 days), so a
block is one day (``refit_every``) or longer, such that a series has at most
``max_refits`` refits; a training window larger than ``max_train_rows`` is
subsampled uniformly (seeded, independent of the values). The rule-based
models need no fitting and are computed for all targets at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from burstlab.forecast.features import (
    feature_matrix,
    first_row,
    period_intervals,
    regression_columns,
    seasonal_lag,
)
from burstlab.forecast.models import (
    XGBoostParams,
    fit_linear,
    fit_xgboost,
    last_value,
    moving_average,
    seasonal_naive,
)
from burstlab.forecast.series import DAY_S, WEEK_S


def nmae(actual: np.ndarray, predicted: np.ndarray) -> float | None:
    """``Σ |y - ŷ| / Σ |y|`` (None when every actual is 0 or there are none)."""
    denominator = float(np.sum(np.abs(actual)))
    if denominator == 0:
        return None
    return float(np.sum(np.abs(actual - predicted))) / denominator


def nmse(actual: np.ndarray, predicted: np.ndarray) -> float | None:
    """``Σ (y - ŷ)² / Σ (y - ȳ)²`` (None when the actuals do not vary)."""
    if actual.size == 0:
        return None
    denominator = float(np.sum((actual - actual.mean()) ** 2))
    if denominator == 0:
        return None
    return float(np.sum((actual - predicted) ** 2)) / denominator


@dataclass(frozen=True, slots=True)
class WalkForward:
    """Predictions of every model for the scored targets (interval indices)."""

    targets: np.ndarray
    predictions: dict[str, np.ndarray]
    block: int
    refits: int


def block_size(test_size: int, *, refit_every: int, max_refits: int) -> int:
    """Intervals per refit block: ``refit_every`` or more, at most ``max_refits`` blocks."""
    return max(1, refit_every, math.ceil(test_size / max(1, max_refits)))


def walk_forward(
    values: np.ndarray,
    valid: np.ndarray,
    *,
    granularity_s: int,
    test_start: int,
    models: tuple[str, ...],
    horizon: int = 1,
    lags: int = 3,
    window: int = 6,
    refit_every: int = 1,
    max_refits: int = 8,
    max_train_rows: int = 50_000,
    seed: int = 0,
    day_offset_s: float = 0.0,
    weekday0: int = 0,
    xgboost: XGBoostParams | None = None,
) -> WalkForward:
    """Predict every valid interval from ``test_start`` on with each model in ``models``.

    ``values`` and ``valid`` come from one series of an
    :class:`~burstlab.forecast.series.IntervalSeries`. The caller checks that
    there is enough history (``test_start`` past :func:`first_row` and, for a
    seasonal model, past its lag). Predictions are clipped at 0: every series
    is a count or a length.
    """
    n = values.size
    lo = first_row(horizon=horizon, lags=lags, window=window)
    if not lo <= test_start - horizon < n:
        raise ValueError(f"test_start {test_start} leaves no training rows (first row {lo})")
    targets = np.flatnonzero(valid[test_start:]) + test_start
    predictions: dict[str, np.ndarray] = {}
    features = (
        feature_matrix(
            values,
            granularity_s=granularity_s,
            horizon=horizon,
            lags=lags,
            window=window,
            day_offset_s=day_offset_s,
            weekday0=weekday0,
        )
        if any(m in models for m in ("linear", "xgboost"))
        else None
    )
    block = block_size(n - test_start, refit_every=refit_every, max_refits=max_refits)
    starts = list(range(test_start, n, block))
    for name in models:
        if name == "last":
            predicted = last_value(values, targets, horizon)
        elif name in ("seasonal_day", "seasonal_week"):
            period = period_intervals(DAY_S if name == "seasonal_day" else WEEK_S, granularity_s)
            lag = seasonal_lag(period, horizon)
            if lag is None or test_start < lag:
                raise ValueError(f"{name} needs {lag} intervals of history")
            predicted = seasonal_naive(values, targets, lag)
        elif name == "moving_average":
            predicted = moving_average(values, targets, horizon, window)
        elif name in ("linear", "xgboost"):
            assert features is not None
            x = features.matrix if name == "xgboost" else features.columns(regression_columns(lags))
            predicted = np.empty(targets.size)
            for k, start in enumerate(starts):
                rows = np.flatnonzero(valid[lo : start - horizon + 1]) + lo
                if rows.size > max_train_rows:
                    pick = np.random.default_rng([seed, start]).choice(
                        rows.size, max_train_rows, replace=False
                    )
                    rows = rows[np.sort(pick)]
                if name == "linear":
                    model = fit_linear(x[rows], values[rows])
                else:
                    model = fit_xgboost(x[rows], values[rows], seed=seed + k, params=xgboost)
                inside = (targets >= start) & (targets < start + block)
                predicted[inside] = model(x[targets[inside]])
        else:
            raise ValueError(f"unknown model {name!r}")
        predictions[name] = np.maximum(predicted, 0.0)
    return WalkForward(targets, predictions, block, len(starts))
