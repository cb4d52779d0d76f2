"""The time axis a run's figures share: intended send time from the run's start, in a
unit that suits its span, cut into round windows, with the offered rate per window."""

from __future__ import annotations

import math

import numpy as np
import polars as pl

#: At most this many windows over a run's schedule.
WINDOWS = 40
#: Candidate window widths, seconds: the smallest giving few enough windows is used.
NICE_WINDOWS_S = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)


def window_for(table: pl.DataFrame) -> float:
    """A round window width giving at most :data:`WINDOWS` windows over the schedule,
    and fewer for small runs (about ten requests a window, five windows at least)."""
    width = span(table)
    most = max(5, min(WINDOWS, table.height // 10))
    for nice in NICE_WINDOWS_S:
        if width / nice <= most:
            return float(nice)
    return float(math.ceil(width / most / 3600) * 3600)


def span(table: pl.DataFrame) -> float:
    """Seconds from the axis origin to the last intended send time."""
    bounds = _bounds(table["arrival_s"])
    return bounds[1] - _origin(*bounds) if bounds is not None else 0.0


def _bounds(series: pl.Series) -> tuple[float, float] | None:
    """The first and last finite value of ``series`` (no copy of it), or None."""
    kept = pl.col(series.name).cast(pl.Float64)
    kept = kept.filter(kept.is_finite())
    first, last = series.to_frame().select(kept.min(), kept.max().alias("last")).row(0)
    return None if first is None else (float(first), float(last))


def origin(arrivals: np.ndarray) -> float:
    """Where time axes start (s): 0, unless the run starts later than it lasts (a part
    of a long trace, as an autoscaled run is), then its first arrival."""
    return _origin(float(arrivals.min()), float(arrivals.max()))


def _origin(first: float, last: float) -> float:
    return min(first, 0.0) if first <= last - first else first


def finite(series: pl.Series) -> np.ndarray:
    """The finite values of ``series`` as float64 (nulls and NaN dropped)."""
    values = np.asarray(series.cast(pl.Float64).fill_null(float("nan")).to_numpy(), np.float64)
    kept: np.ndarray = values[np.isfinite(values)]
    return kept


def time_unit(span_s: float) -> tuple[float, str]:
    """Seconds per axis unit and its name: s up to 10 min, min up to 3 h, then h."""
    if span_s <= 600:
        return 1.0, "s"
    if span_s <= 3 * 3600:
        return 60.0, "min"
    return 3600.0, "h"


def offered(table: pl.DataFrame, window: float) -> tuple[np.ndarray, np.ndarray]:
    """Window left edges (s) and scheduled requests per window, zeros included."""
    arrivals = finite(table["arrival_s"])
    if arrivals.size == 0:
        return np.array([0.0]), np.array([0.0])
    first = math.floor(origin(arrivals) / window)
    last = math.floor(arrivals.max() / window)
    edges = np.arange(first, last + 2) * window
    counts, _ = np.histogram(arrivals, bins=edges)
    return edges[:-1], counts.astype(np.float64)


def steps(starts: np.ndarray, values: np.ndarray, window: float) -> tuple[np.ndarray, np.ndarray]:
    """Step-plot inputs: window edges and values, the last value repeated."""
    return np.append(starts, starts[-1] + window), np.append(values, values[-1])
