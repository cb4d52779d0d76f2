"""Failures: rate per class and per window, and how they move with load and burstiness."""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from burstlab.analyze.burstiness import WindowSeries


class ClassFailures(BaseModel):
    """Failure rate of one model x log type class."""

    model_config = ConfigDict(extra="forbid")

    model: str | None
    log_type: str | None
    requests: int
    failure_rate: float


class Failures(BaseModel):
    """Failure rates; correlations are Pearson's over windows with requests (null if undefined)."""

    model_config = ConfigDict(extra="forbid")

    failure_rate: float
    by_class: list[ClassFailures]
    window_failure_rate: list[float | None]
    corr_with_rate: float | None
    corr_with_cv: float | None


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or a[ok].std() == 0 or b[ok].std() == 0:
        return None
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def failures(table: pl.DataFrame, windows: WindowSeries) -> Failures:
    """Failure statistics, per window on the same grid as ``windows``."""
    by_class = (
        table.group_by("model", "log_type")
        .agg(requests=pl.len(), failure_rate=pl.col("failed").mean())
        .with_columns(pl.col("model").cast(pl.String), pl.col("log_type").cast(pl.String))
        .sort("requests", descending=True)
    )
    n = len(windows.requests)
    which = (table["arrival_s"].to_numpy() // windows.window_s).astype(np.int64)
    failed = np.bincount(which, weights=table["failed"].to_numpy(), minlength=n)[:n]
    requests = np.asarray(windows.requests, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(requests > 0, failed / requests, np.nan)
    cv = np.array([np.nan if v is None else v for v in windows.cv])
    return Failures(
        failure_rate=float(table["failed"].mean() or 0.0),  # type: ignore[arg-type]
        by_class=[ClassFailures(**row) for row in by_class.iter_rows(named=True)],
        window_failure_rate=[None if not np.isfinite(v) else float(v) for v in rate],
        corr_with_rate=_corr(rate, np.asarray(windows.rate_rps)),
        corr_with_cv=_corr(rate, cv),
    )
