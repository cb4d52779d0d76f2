"""Forecasting a trace's load: per-interval series, baselines and XGBoost, walk-forward scores.

The BurstGPT paper forecasts request counts and token lengths per interval and
finds coarser intervals easier to forecast. :func:`run_forecast` does this for
any request table at several granularities, :func:`write_forecast` saves the
predictions and scores, and :func:`load_predictions` reads one series back
(the primary granularity and best model unless told otherwise).
"""

from __future__ import annotations

from burstlab.forecast.evaluate import WalkForward, nmae, nmse, walk_forward
from burstlab.forecast.features import Features, feature_matrix
from burstlab.forecast.models import MODELS, XGBoostParams
from burstlab.forecast.run import (
    DEFAULT_GRANULARITIES,
    PREDICTION_SCHEMA,
    ForecastResult,
    ForecastSettings,
    Skip,
    load_predictions,
    run_forecast,
    write_forecast,
)
from burstlab.forecast.series import SERIES, IntervalSeries, interval_series

__all__ = [
    "DEFAULT_GRANULARITIES",
    "MODELS",
    "PREDICTION_SCHEMA",
    "SERIES",
    "Features",
    "ForecastResult",
    "ForecastSettings",
    "IntervalSeries",
    "Skip",
    "WalkForward",
    "XGBoostParams",
    "feature_matrix",
    "interval_series",
    "load_predictions",
    "nmae",
    "nmse",
    "run_forecast",
    "walk_forward",
    "write_forecast",
]
