"""Per-interval series of a request table: what a capacity planner forecasts.

Interval ``k`` of granularity ``g`` seconds covers ``[k g, (k + 1) g)`` on the
table's ``arrival_s`` axis (so intervals of every granularity line up at 0).
Four series, one value per interval:

- ``requests``: the number of requests that arrive in the interval;
- ``input_mean``, ``output_mean``: mean request and response tokens of those
  requests (failed requests included, as the source recorded them);
- ``tokens``: total request plus response tokens.

A mean is undefined in an interval with no requests: such an interval is not
*valid* for that series (it is neither trained on nor scored) and its value,
used only as a feature for later intervals, is carried forward from the last
interval with requests (0 before the first one), which uses only the past.

The trace is taken to cover ``[0, last arrival]``; only whole intervals are
kept, and a last interval counts as whole when the trace covers at least
:data:`COVERED` of it (a trace of 59 min 58 s gives 60 intervals of 1 min).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

#: Series names, in the order reports show them.
SERIES = ("requests", "input_mean", "output_mean", "tokens")
#: Share of its length the trace must cover for the last interval to count.
COVERED = 0.95
DAY_S = 86_400
WEEK_S = 7 * DAY_S


@dataclass(frozen=True, slots=True)
class IntervalSeries:
    """The four series of one table at one granularity (``granularity_s`` seconds).

    ``values[name]`` holds float64 values per interval, carried forward where a
    mean is undefined; ``valid[name]`` says where the value is a real
    observation (always for ``requests`` and ``tokens``). ``span_s`` is the
    time the table covers (its last arrival).
    """

    granularity_s: int
    values: dict[str, np.ndarray]
    valid: dict[str, np.ndarray]
    span_s: float

    @property
    def size(self) -> int:
        """Number of intervals."""
        return int(self.values["requests"].size)

    @property
    def start_s(self) -> np.ndarray:
        """Start of every interval, seconds on the table's ``arrival_s`` axis."""
        return np.arange(self.size, dtype=np.float64) * self.granularity_s

    @classmethod
    def from_sums(
        cls,
        granularity_s: int,
        counts: np.ndarray,
        input_sum: np.ndarray,
        output_sum: np.ndarray,
        *,
        span_s: float | None = None,
    ) -> IntervalSeries:
        """The series from per-interval request counts and token sums (no table needed)."""
        counts = np.asarray(counts, dtype=np.float64)
        some = counts > 0
        safe = np.where(some, counts, 1.0)
        values = {
            "requests": counts,
            "input_mean": carry_forward(np.asarray(input_sum) / safe, some),
            "output_mean": carry_forward(np.asarray(output_sum) / safe, some),
            "tokens": np.asarray(input_sum, dtype=np.float64) + np.asarray(output_sum),
        }
        always = np.ones(counts.size, dtype=bool)
        valid = {"requests": always, "input_mean": some, "output_mean": some, "tokens": always}
        span = float(counts.size * granularity_s) if span_s is None else span_s
        return cls(granularity_s, values, valid, span)


def carry_forward(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``values`` with every invalid entry replaced by the last valid one before it
    (0.0 before the first): uses only the past, vectorised."""
    index = np.where(valid, np.arange(values.size), -1)
    np.maximum.accumulate(index, out=index)
    out = np.where(index >= 0, values[np.maximum(index, 0)], 0.0)
    return out.astype(np.float64)


def interval_count(span_s: float, granularity_s: float) -> int:
    """Whole intervals of ``granularity_s`` in a trace covering ``[0, span_s]``."""
    return max(0, math.floor(span_s / granularity_s + (1.0 - COVERED)))


def interval_series(table: pl.DataFrame, granularity_s: int) -> IntervalSeries:
    """The four series of a canonical request table at ``granularity_s`` seconds."""
    if granularity_s <= 0:
        raise ValueError("granularity_s must be positive")
    arrival = table["arrival_s"].to_numpy()
    span = float(arrival.max()) if arrival.size else 0.0  # as run_forecast: sorted or not
    n = interval_count(span, granularity_s)
    index = (arrival // granularity_s).astype(np.int64)
    keep = index < n
    index = index[keep]
    counts = np.bincount(index, minlength=n).astype(np.float64)
    inputs = table["input_tokens"].to_numpy()[keep].astype(np.float64)
    outputs = table["output_tokens"].to_numpy()[keep].astype(np.float64)
    input_sum = np.bincount(index, weights=inputs, minlength=n)
    output_sum = np.bincount(index, weights=outputs, minlength=n)
    return IntervalSeries.from_sums(granularity_s, counts, input_sum, output_sum, span_s=span)


def granularity_label(granularity_s: int) -> str:
    """``600`` -> ``10m``, ``3600`` -> ``60m``, ``45`` -> ``45s`` (the labels of metrics.json)."""
    return f"{granularity_s // 60}m" if granularity_s % 60 == 0 else f"{granularity_s}s"


def span_text(span_s: float) -> str:
    """A span as people read it: ``58 min``, ``5.0 h``, ``30.0 days``."""
    if span_s < 2 * 3600:
        return f"{span_s / 60:.0f} min"
    if span_s < 2 * DAY_S:
        return f"{span_s / 3600:.1f} h"
    days = span_s / DAY_S
    if days >= 30:
        return f"{days:.1f} days"
    # two decimals, rounded down: a span just short of 14 days must not read as 14
    return f"{math.floor(days * 100) / 100:.2f} days"
