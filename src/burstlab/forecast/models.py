"""Forecasting models: four baselines and two regressions over the features.

Every model predicts target interval ``t`` from values observed up to
``t - horizon`` (see :mod:`burstlab.forecast.features`):

- ``last``: ``y[t - horizon]``, the last value known;
- ``seasonal_day``, ``seasonal_week``: the same interval one day (week)
  earlier, or the latest such one at least ``horizon`` back;
- ``moving_average``: the mean of the ``window`` values ending at ``t - horizon``;
- ``linear``: least squares (with a tiny ridge) on lags, rolling mean and
  standard deviation and the cyclic clock, refitted like XGBoost;
- ``xgboost``: gradient-boosted trees (``hist``, one thread by default) on every
  feature, including the seasonal lags. XGBoost is an optional dependency
  (``pip install 'burstlab[forecast]'``), imported only when fitted.

Baselines are pure functions of the values, vectorised over all targets. The
regressions are fitted by :func:`fit_linear` and :func:`fit_xgboost`, each
returning a predictor (a function from a feature matrix to predictions).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Every model, in the order reports show them.
MODELS = ("xgboost", "last", "seasonal_day", "seasonal_week", "moving_average", "linear")
#: Models fitted on training rows (refitted at block boundaries); the rest are rules.
FITTED = ("xgboost", "linear")
#: What to do when XGBoost is missing.
XGBOOST_HINT = "install it with: pip install 'burstlab[forecast]'"

Predictor = Callable[[np.ndarray], np.ndarray]


def xgboost_missing() -> str | None:
    """Why XGBoost cannot be used here, or None when it can (the import is not run)."""
    if importlib.util.find_spec("xgboost") is None:
        return f"xgboost is not installed ({XGBOOST_HINT})"
    return None


def last_value(values: np.ndarray, targets: np.ndarray, horizon: int) -> np.ndarray:
    """``values[t - horizon]`` for every target index ``t``."""
    out: np.ndarray = values[targets - horizon]
    return out


def seasonal_naive(values: np.ndarray, targets: np.ndarray, lag: int) -> np.ndarray:
    """``values[t - lag]``: ``lag`` is a whole number of periods, at least the horizon."""
    out: np.ndarray = values[targets - lag]
    return out


def moving_average(
    values: np.ndarray, targets: np.ndarray, horizon: int, window: int
) -> np.ndarray:
    """The mean of ``values[t - horizon - window + 1 .. t - horizon]`` for every ``t``."""
    total = np.concatenate(([0.0], np.cumsum(values, dtype=np.float64)))
    end = targets - horizon + 1
    out: np.ndarray = (total[end] - total[end - window]) / window
    return out


def fit_linear(x: np.ndarray, y: np.ndarray, *, ridge: float = 1e-6) -> Predictor:
    """Least squares of ``y`` on standardised ``x`` plus an intercept.

    ``ridge`` (relative to the number of rows) keeps constant or collinear
    columns (a clock that does not move in a short trace) from blowing up.
    """
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    rows, cols = z.shape
    design = np.column_stack([np.ones(rows), z])
    penalty = np.sqrt(ridge * rows) * np.eye(cols + 1)
    penalty[0, 0] = 0.0  # the intercept is not shrunk
    coef, *_ = np.linalg.lstsq(
        np.vstack([design, penalty]), np.concatenate([y, np.zeros(cols + 1)]), rcond=None
    )

    def predict(features: np.ndarray) -> np.ndarray:
        out: np.ndarray = coef[0] + ((features - mean) / scale) @ coef[1:]
        return out

    return predict


@dataclass(frozen=True, slots=True)
class XGBoostParams:
    """Settings of the boosted trees: small, so refits stay fast on a shared CPU
    (one thread: OpenMP threads slow down badly when the cores are busy)."""

    n_estimators: int = 200
    max_depth: int = 4
    learning_rate: float = 0.05
    subsample: float = 0.9
    max_bin: int = 64
    n_jobs: int = 1


def fit_xgboost(
    x: np.ndarray, y: np.ndarray, *, seed: int = 0, params: XGBoostParams | None = None
) -> Predictor:
    """Boosted regression trees of ``y`` on ``x`` (NaN is missing); deterministic per seed."""
    import xgboost as xgb  # noqa: PLC0415 - an optional extra, loaded on use

    p = params or XGBoostParams()
    data = xgb.QuantileDMatrix(x, label=y, max_bin=p.max_bin)
    booster = xgb.train(
        {
            "objective": "reg:squarederror",
            "tree_method": "hist",
            "max_depth": p.max_depth,
            "eta": p.learning_rate,
            "subsample": p.subsample,
            "max_bin": p.max_bin,
            "nthread": p.n_jobs,
            "seed": seed,
            "verbosity": 0,
        },
        data,
        num_boost_round=p.n_estimators,
    )

    def predict(features: np.ndarray) -> np.ndarray:
        out = np.asarray(booster.inplace_predict(features), dtype=np.float64)
        return out

    return predict
