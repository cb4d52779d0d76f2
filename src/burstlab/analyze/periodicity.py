"""Daily and weekly cycles: load by hour of day and day of week, and dominant periods.

Hours and weekdays need the table's clock: ``day_offset_s`` is the time of day
(seconds after midnight) at which ``arrival_s`` is 0, and ``weekday0`` the
weekday then (0 = Monday), when the source says (see :func:`clock_of`).
Dominant periods come from peaks of the autocorrelation of requests per bin.
"""

from __future__ import annotations

import re
from datetime import datetime

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from burstlab.trace.info import counts_per_bin
from burstlab.trace.readers import LoadReport

DAY_S = 86_400.0


class Periodicity(BaseModel):
    """Requests and tokens per hour of day / weekday (null when the span is too short)."""

    model_config = ConfigDict(extra="forbid")

    bin_s: float
    hour_requests: list[int] | None
    hour_tokens: list[int] | None
    weekday_requests: list[int] | None
    weekday_tokens: list[int] | None
    dominant_periods_s: list[float]
    dominant_acf: list[float]
    note: str | None


def clock_of(report: LoadReport | None) -> tuple[float, int | None]:
    """(time of day at arrival_s = 0 in seconds, weekday then or None) from a load report.

    A datetime origin gives both. BurstGPT counts seconds from midnight of its
    first day, so its origin gives the time of day but no weekday. Anything
    else is taken to start at midnight of an unknown weekday.
    """
    if report is None or report.origin is None:
        return 0.0, None
    origin = report.origin
    match = re.fullmatch(r"(-?[0-9.e+]+) s", origin)
    if match:
        return float(match.group(1)) % DAY_S if report.format == "burstgpt" else 0.0, None
    try:
        when = datetime.fromisoformat(origin[:26])
    except ValueError:
        return 0.0, None
    return when.hour * 3600 + when.minute * 60 + when.second + when.microsecond / 1e6, (
        when.weekday()
    )


def _acf(x: np.ndarray) -> np.ndarray:
    x = x - x.mean()
    n = x.size
    spectrum = np.fft.rfft(x, 2 * n)
    acf = np.fft.irfft(spectrum * np.conj(spectrum))[:n]
    return acf / acf[0] if acf[0] > 0 else np.zeros(n)


def periodicity(
    table: pl.DataFrame, *, day_offset_s: float = 0.0, weekday0: int | None = None, top: int = 3
) -> Periodicity:
    """Hour-of-day and weekday profiles, and the ``top`` autocorrelation peaks."""
    arrival = table["arrival_s"].to_numpy()
    span = float(arrival[-1] - arrival[0]) if arrival.size else 0.0
    bin_s = 60.0 if span < 2 * DAY_S else 600.0
    counts = counts_per_bin(table, bin_s).astype(np.float64)
    periods: list[float] = []
    values: list[float] = []
    if counts.size >= 8:
        acf = _acf(counts)
        lag = np.arange(2, acf.size // 2)
        peaks = lag[(acf[lag] > acf[lag - 1]) & (acf[lag] >= acf[lag + 1]) & (acf[lag] > 0.1)]
        for p in peaks[np.argsort(acf[peaks])[::-1][:top]]:
            periods.append(float(p * bin_s))
            values.append(float(acf[p]))
    clock = pl.col("arrival_s") + day_offset_s
    tokens = (pl.col("input_tokens") + pl.col("output_tokens")).cast(pl.Int64)
    hour_r = hour_t = wd_r = wd_t = None
    notes = []
    if span >= DAY_S:
        hours = table.group_by(((clock % DAY_S) // 3600).cast(pl.Int32).alias("h")).agg(
            n=pl.len(), t=tokens.sum()
        )
        hour_r, hour_t = _dense(hours, "h", 24)
    else:
        notes.append("hour-of-day profile needs at least one day")
    if span >= 7 * DAY_S and weekday0 is not None:
        days = table.group_by(
            (((clock // DAY_S).cast(pl.Int64) + weekday0) % 7).cast(pl.Int32).alias("d")
        ).agg(n=pl.len(), t=tokens.sum())
        wd_r, wd_t = _dense(days, "d", 7)
    else:
        notes.append("weekday profile needs a week and a calendar start (a datetime trace)")
    return Periodicity(
        bin_s=bin_s,
        hour_requests=hour_r,
        hour_tokens=hour_t,
        weekday_requests=wd_r,
        weekday_tokens=wd_t,
        dominant_periods_s=periods,
        dominant_acf=values,
        note="; ".join(notes) or None,
    )


def _dense(groups: pl.DataFrame, key: str, size: int) -> tuple[list[int], list[int]]:
    n, t = [0] * size, [0] * size
    for k, count, total in groups.select(key, "n", "t").iter_rows():
        n[k], t[k] = int(count), int(total)
    return n, t
