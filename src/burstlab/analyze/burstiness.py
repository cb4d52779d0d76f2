"""Burstiness of arrivals: grid-aware gap fits, coefficient of variation, index of dispersion.

All figures are about inter-arrival gaps (seconds) and request counts per bin.
A Poisson process has CV 1, Gamma shape 1 and index of dispersion 1; BurstGPT's
traffic is far burstier (shape well below 1, IDC well above 1). Timestamps are
often quantised (whole seconds, a 3 s grid): gap fits use the likelihood of the
logged ticks (:mod:`burstlab.analyze.gaps`), zero gaps included, and say when
the grid leaves the shape unidentifiable. Counts are taken in bins aligned half
a tick off the grid, so a logged tick never straddles a bin edge.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from burstlab.analyze.gaps import (
    GapFit,
    Resolution,
    detect_resolution,
    fit_gaps,
    fit_windows,
    on_grid,
    sorted_arrivals,
)
from burstlab.trace.info import counts_per_bin

#: Bin widths (s) of the index of dispersion.
IDC_BINS_S = (1.0, 10.0, 60.0, 600.0)
#: An IDC is judged on at least this many complete bins...
IDC_MIN_BINS = 10
#: ... holding at least this many requests each on average (below, counts are 0 or 1
#: and the IDC reads about 1 whatever the process).
IDC_MIN_MEAN = 0.25


class Dispersion(BaseModel):
    """Index of dispersion (variance / mean of counts) per bin width, or why not judged,
    and how many complete bins each rests on (its relative standard error is about
    ``sqrt(2 / bins)``)."""

    model_config = ConfigDict(extra="forbid")

    idc: dict[str, float | None]
    notes: dict[str, str]
    bins: dict[str, int] = {}


def idc_key(width_s: float) -> str:
    """The name of a bin width in IDC tables: ``1s``, ``600s``."""
    return f"{width_s:g}s"


def count_sums(
    arrival_s: np.ndarray, width_s: float, tick_s: float = 0.0
) -> tuple[float, float, int]:
    """Requests, sum of squared counts, and the number of complete ``width_s`` bins from
    the first arrival (edges half a tick off the grid).

    Sorted arrivals give sorted bin indices, so the counts of non-empty bins are run
    lengths: O(requests) time and memory, however many (empty) bins the span holds.
    """
    if arrival_s.size == 0:
        return 0.0, 0.0, 0
    shifted = arrival_s - arrival_s[0] + tick_s / 2
    bins = int(shifted[-1] // width_s)
    if bins < 1:
        return 0.0, 0.0, bins
    if bins * 4 < shifted.size:  # few bins: binary searches of their edges
        edges = np.arange(bins + 1) * width_s
        runs = np.diff(np.searchsorted(shifted, edges, side="left")).astype(np.float64)
        total = float(runs.sum())
    else:
        index = (shifted // width_s).astype(np.int64)
        index = index[index < bins]
        starts = np.flatnonzero(np.diff(index, prepend=-1))
        runs = np.diff(np.append(starts, index.size)).astype(np.float64)
        total = float(index.size)
    return total, float((runs * runs).sum()), bins


def idc_of_sums(total: float, squares: float, bins: int) -> float:
    """Variance over mean of bin counts from their sums (NaN with under 2 bins or none)."""
    if bins < 2 or total == 0:
        return float("nan")
    mean = total / bins
    return (squares / bins - mean * mean) / mean


def count_moments(arrival_s: np.ndarray, width_s: float, tick_s: float = 0.0) -> tuple[float, int]:
    """IDC of counts in the complete ``width_s`` bins from the first arrival, and how many
    bins (see :func:`count_sums`)."""
    total, squares, bins = count_sums(arrival_s, width_s, tick_s)
    return idc_of_sums(total, squares, bins), bins


def dispersion(
    arrival_s: np.ndarray,
    widths_s: tuple[float, ...] = IDC_BINS_S,
    *,
    resolution: Resolution | None = None,
) -> Dispersion:
    """IDC of counts in complete bins of each width, from the first arrival.

    A width below the timestamp tick, fewer than :data:`IDC_MIN_BINS` complete bins
    or under :data:`IDC_MIN_MEAN` requests per bin gives None and a note.
    """
    arrival = sorted_arrivals(arrival_s)
    tick = (resolution or detect_resolution(arrival)).tick_s or 0.0
    span = float(arrival[-1] - arrival[0]) + tick / 2 if arrival.size else 0.0
    idc: dict[str, float | None] = {}
    notes: dict[str, str] = {}
    counted: dict[str, int] = {}
    for width in widths_s:
        key = idc_key(width)
        bins = int(span // width)
        mean = arrival.size / max(span, 1e-12) * width
        if width < tick * 0.999:
            idc[key], notes[key] = None, f"below the timestamp resolution ({tick:g} s)"
        elif bins < IDC_MIN_BINS:
            idc[key], notes[key] = None, f"{bins} complete bins (needs {IDC_MIN_BINS})"
        elif mean < IDC_MIN_MEAN:
            idc[key] = None
            notes[key] = f"{mean:.2g} requests per bin: too few to tell from Poisson"
        else:
            idc[key] = count_moments(arrival, width, tick)[0]
        counted[key] = bins
    return Dispersion(idc=idc, notes=notes, bins=counted)


class WindowSeries(BaseModel):
    """Per-window statistics, one entry per window of ``window_s`` seconds from time 0.

    ``shape``/``scale`` are the censored Gamma fit of the window's gaps, null where
    too few gaps or the grid leaves them unidentifiable; ``cv`` is the CV of the
    logged gaps, null with fewer than two.
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

    gaps: GapFit
    cv: float
    dispersion: Dispersion
    peak_to_mean: float


class Burstiness(ArrivalStats):
    """Burstiness of a table, with a Poisson process of the same rate beside it."""

    mean_rps: float
    poisson: ArrivalStats
    windows: WindowSeries


def _nan_to_none(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in values]


def arrival_stats(arrival_s: np.ndarray, resolution: Resolution | None = None) -> ArrivalStats:
    """Gap fits and CV, IDC at 1/10/60/600 s, and the peak-to-mean 60-s rate."""
    res = resolution or detect_resolution(arrival_s)
    gaps = np.diff(arrival_s)
    per_minute = counts_per_bin(pl.DataFrame({"arrival_s": arrival_s - arrival_s[0]}), 60.0)
    per_minute = per_minute[:-1] if per_minute.size > 1 else per_minute
    return ArrivalStats(
        gaps=fit_gaps(arrival_s, res),
        cv=float(gaps.std() / gaps.mean()) if gaps.mean() > 0 else float("nan"),
        dispersion=dispersion(arrival_s, resolution=res),
        peak_to_mean=float(per_minute.max() / per_minute.mean()),
    )


def window_rates(arrival_s: np.ndarray, window_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Requests and rate (req/s) per window of ``window_s`` from 0; the last window is
    cut short by the end of the table, so its rate is over the part it covers."""
    requests = counts_per_bin(pl.DataFrame({"arrival_s": arrival_s}), window_s)
    starts = np.arange(requests.size) * window_s
    covered = np.clip(arrival_s[-1] - starts, 1e-9, window_s)
    return requests, requests / covered


def window_series(
    arrival_s: np.ndarray, window_s: float, resolution: Resolution | None = None
) -> WindowSeries:
    """Censored Gamma fit, CV and rate of every window at once (no per-window loop)."""
    gaps = np.diff(arrival_s)
    which = (arrival_s[1:] // window_s).astype(np.int64)
    n_windows = int(arrival_s[-1] // window_s) + 1
    fits = fit_windows(arrival_s, window_s, resolution=resolution)
    all_n = np.bincount(which, minlength=n_windows).astype(np.float64)
    all_sum = np.bincount(which, weights=gaps, minlength=n_windows)
    all_sq = np.bincount(which, weights=gaps * gaps, minlength=n_windows)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = all_sum / all_n
        cv = np.sqrt(np.maximum(all_sq / all_n - mean**2, 0.0)) / mean
        cv = np.where(all_n >= 2, cv, np.nan)
    requests, rates = window_rates(arrival_s, window_s)
    return WindowSeries(
        window_s=window_s,
        start_s=(np.arange(n_windows) * window_s).tolist(),
        requests=requests.tolist(),
        rate_rps=rates.tolist(),
        shape=_nan_to_none(fits.shape),
        scale=_nan_to_none(fits.scale),
        cv=_nan_to_none(cv),
    )


def burstiness(table: pl.DataFrame, *, window_s: float = 1200.0, seed: int = 0) -> Burstiness:
    """Burstiness of ``table``'s arrivals overall and per window of ``window_s`` seconds.

    The Poisson reference has the same number of requests over the same span,
    drawn with ``seed`` and logged on the same timestamp grid.
    """
    arrival = table["arrival_s"].to_numpy()
    if arrival.size < 3:
        raise ValueError("burstiness needs at least 3 requests")
    res = detect_resolution(arrival)
    whole = arrival_stats(arrival, res)
    rng = np.random.default_rng(seed)
    poisson = np.sort(rng.uniform(arrival[0], arrival[-1], arrival.size))
    poisson = on_grid(poisson, res.tick_s)
    span = float(arrival[-1] - arrival[0])
    return Burstiness(
        **whole.model_dump(),
        mean_rps=arrival.size / span if span > 0 else float("nan"),
        poisson=arrival_stats(poisson, res),
        windows=window_series(arrival, window_s, res),
    )
