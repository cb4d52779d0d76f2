"""Burstiness of arrivals: Gamma fits, coefficient of variation, index of dispersion.

All figures are about inter-arrival gaps (seconds) and request counts per bin.
A Poisson process has CV 1, Gamma shape 1 and index of dispersion 1; BurstGPT's
traffic is far burstier (shape well below 1, IDC well above 1). Zero gaps
(requests logged in the same instant) cannot enter a Gamma likelihood; they are
left out of the fits and their share is reported.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from burstlab.analyze.gamma import gamma_mle
from burstlab.trace.info import counts_per_bin

IDC_BINS_S = (1.0, 10.0, 60.0)


class GammaFit(BaseModel):
    """Gamma MLE of positive inter-arrival gaps: shape (dimensionless), scale (s)."""

    model_config = ConfigDict(extra="forbid")

    shape: float
    scale: float
    gaps: int


class WindowSeries(BaseModel):
    """Per-window statistics, one entry per window of ``window_s`` seconds from time 0.

    ``shape``/``scale``/``cv`` are NaN (null in JSON) where a window has fewer
    than two distinct positive gaps.
    """

    model_config = ConfigDict(extra="forbid")

    window_s: float
    start_s: list[float]
    requests: list[int]
    rate_rps: list[float]
    shape: list[float | None]
    scale: list[float | None]
    cv: list[float | None]


class ArrivalStats(BaseModel):
    """The headline burstiness numbers of one arrival process."""

    model_config = ConfigDict(extra="forbid")

    gamma: GammaFit
    cv: float
    idc: dict[str, float]
    peak_to_mean: float


class Burstiness(ArrivalStats):
    """Burstiness of a table, with a Poisson process of the same rate beside it."""

    mean_rps: float
    zero_gap_share: float
    poisson: ArrivalStats
    windows: WindowSeries


def _nan_to_none(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in values]


def _complete_bins(table: pl.DataFrame, width_s: float) -> np.ndarray:
    """Counts per bin without the last one, which the end of the table cuts short."""
    counts = counts_per_bin(table, width_s)
    return counts[:-1] if counts.size > 1 else counts


def arrival_stats(arrival_s: np.ndarray) -> ArrivalStats:
    """CV and Gamma fit of the gaps, IDC of counts at 1/10/60 s, peak-to-mean 60-s rate."""
    gaps = np.diff(arrival_s)
    positive = gaps[gaps > 0]
    shape, scale = gamma_mle(np.array([positive.mean()]), np.array([np.log(positive).mean()]))
    table = pl.DataFrame({"arrival_s": arrival_s})
    idc = {}
    for width in IDC_BINS_S:
        counts = _complete_bins(table, width)
        idc[f"{width:g}s"] = float(counts.var() / counts.mean())
    per_minute = _complete_bins(table, 60.0)
    return ArrivalStats(
        gamma=GammaFit(shape=float(shape[0]), scale=float(scale[0]), gaps=int(positive.size)),
        cv=float(gaps.std() / gaps.mean()),
        idc=idc,
        peak_to_mean=float(per_minute.max() / per_minute.mean()),
    )


def window_series(arrival_s: np.ndarray, window_s: float) -> WindowSeries:
    """Gamma fit, CV and rate of every window at once (bincount sums, no per-window loop)."""
    gaps = np.diff(arrival_s)
    which = (arrival_s[1:] // window_s).astype(np.int64)
    n_windows = int(arrival_s[-1] // window_s) + 1
    pos = gaps > 0
    w, g = which[pos], gaps[pos]
    count = np.bincount(w, minlength=n_windows).astype(np.float64)
    total = np.bincount(w, weights=g, minlength=n_windows)
    logs = np.bincount(w, weights=np.log(g), minlength=n_windows)
    all_n = np.bincount(which, minlength=n_windows).astype(np.float64)
    all_sum = np.bincount(which, weights=gaps, minlength=n_windows)
    all_sq = np.bincount(which, weights=gaps * gaps, minlength=n_windows)
    with np.errstate(divide="ignore", invalid="ignore"):
        shape, scale = gamma_mle(total / count, logs / count)
        shape = np.where(count >= 2, shape, np.nan)
        scale = np.where(count >= 2, scale, np.nan)
        mean = all_sum / all_n
        cv = np.sqrt(np.maximum(all_sq / all_n - mean**2, 0.0)) / mean
        cv = np.where(all_n >= 2, cv, np.nan)
    requests = counts_per_bin(pl.DataFrame({"arrival_s": arrival_s}), window_s)
    starts = np.arange(n_windows) * window_s
    # the last window is cut short by the end of the table: its rate is over what it covers
    covered = np.clip(arrival_s[-1] - starts, 1e-9, window_s)
    return WindowSeries(
        window_s=window_s,
        start_s=starts.tolist(),
        requests=requests.tolist(),
        rate_rps=(requests / covered).tolist(),
        shape=_nan_to_none(shape),
        scale=_nan_to_none(scale),
        cv=_nan_to_none(cv),
    )


def burstiness(table: pl.DataFrame, *, window_s: float = 1200.0, seed: int = 0) -> Burstiness:
    """Burstiness of ``table``'s arrivals overall and per window of ``window_s`` seconds.

    The Poisson reference has the same number of requests over the same span,
    drawn with ``seed``.
    """
    arrival = table["arrival_s"].to_numpy()
    if arrival.size < 3:
        raise ValueError("burstiness needs at least 3 requests")
    whole = arrival_stats(arrival)
    rng = np.random.default_rng(seed)
    poisson = np.sort(rng.uniform(arrival[0], arrival[-1], arrival.size))
    gaps = np.diff(arrival)
    span = float(arrival[-1] - arrival[0])
    return Burstiness(
        **whole.model_dump(),
        mean_rps=arrival.size / span if span > 0 else float("nan"),
        zero_gap_share=float((gaps == 0).mean()),
        poisson=arrival_stats(poisson),
        windows=window_series(arrival, window_s),
    )
