"""Daily and weekly cycles: load by hour of day and day of week, and dominant periods.

Hours and weekdays need the table's clock: ``day_offset_s`` is the time of day
(seconds after midnight) at which ``arrival_s`` is 0, and ``weekday0`` the
weekday then (0 = Monday), when the source says (see :func:`clock_of`).
Dominant periods come from peaks of the autocorrelation (ACF) of requests per
bin, after removing the least-squares line through the counts (a growing or
shrinking trace otherwise correlates with itself at every lag). A peak counts
once: among neighbouring lags (within 10% of the lag) only the highest is a
candidate, and a lag near a multiple k of a shorter accepted period is that
period repeating unless its ACF beats the ACF at k-1 and k+1 times the period
(a weekly cycle on top of a daily one does; the daily cycle's second day does
not). Each period's significance is its ACF value against white noise: the ACF
of n independent counts is about normal with standard deviation 1/sqrt(n), so
``z = acf * sqrt(n)`` and the one-sided p-value is that normal's tail. Peaks are
kept only outside the 95% band ``1.96 / sqrt(n)`` and when they rise above the
lowest ACF between half their lag and their lag by that band; ``significant``
means p < 0.05 after a Bonferroni correction over the lags searched (n/2), so
a flat trace's chance peaks are listed but not significant.
"""

from __future__ import annotations

import re
from datetime import datetime

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict
from scipy import stats

from burstlab.trace.info import counts_per_bin
from burstlab.trace.readers import LoadReport

DAY_S = 86_400.0


class Period(BaseModel):
    """One dominant period: its lag, the ACF there (of the detrended counts), how far the
    peak rises above the trough before it, and its significance against white noise."""

    model_config = ConfigDict(extra="forbid")

    period_s: float
    acf: float
    prominence: float
    z: float
    p_value: float
    significant: bool


class Periodicity(BaseModel):
    """Requests and tokens per hour of day / weekday (null when the span is too short),
    and dominant periods (``periods``; ``dominant_periods_s``/``dominant_acf`` repeat
    their lags and ACF values). ``white_noise_band`` is ``1.96 / sqrt(bins)``."""

    model_config = ConfigDict(extra="forbid")

    bin_s: float
    hour_requests: list[int] | None
    hour_tokens: list[int] | None
    weekday_requests: list[int] | None
    weekday_tokens: list[int] | None
    dominant_periods_s: list[float]
    dominant_acf: list[float]
    detrend: str = "linear"
    white_noise_band: float | None = None
    periods: list[Period] = []
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


def detrend(counts: np.ndarray) -> np.ndarray:
    """``counts`` less their least-squares line over the bin index."""
    x = counts.astype(np.float64)
    index = np.arange(x.size, dtype=np.float64) - (x.size - 1) / 2
    sxx = float((index**2).sum())
    slope = float((index * (x - x.mean())).sum() / sxx) if sxx > 0 else 0.0
    out: np.ndarray = x - x.mean() - slope * index
    return out


def dominant_periods(counts: np.ndarray, bin_s: float, *, top: int = 3) -> list[Period]:
    """The ``top`` de-duplicated ACF peaks of detrended ``counts`` (see the module doc),
    strongest first."""
    n = counts.size
    if n < 8:
        return []
    acf = _acf(detrend(counts))
    band = 1.96 / np.sqrt(n)
    lag = np.arange(2, acf.size // 2)
    if lag.size == 0:
        return []
    local = lag[(acf[lag] > acf[lag - 1]) & (acf[lag] >= acf[lag + 1]) & (acf[lag] > band)]
    candidates: list[tuple[int, float]] = []
    for p in local:
        near = max(2, round(0.1 * p))
        if acf[p] < acf[max(1, p - near) : p + near + 1].max():
            continue
        prominence = float(acf[p] - acf[p // 2 : p].min())
        if prominence > band:
            candidates.append((int(p), prominence))
    accepted: list[tuple[int, float]] = []
    for p, prominence in candidates:  # ascending lag: fundamentals before their multiples
        repeat = False
        for q, _ in accepted:
            k = round(p / q)
            if k >= 2 and abs(p - k * q) <= max(2, round(0.05 * p)):
                tol = max(2, round(0.05 * k * q))
                around = [
                    acf[max(1, j * q - tol) : j * q + tol + 1].max()
                    for j in (k - 1, k + 1)
                    if j * q - tol < acf.size
                ]
                repeat = repeat or bool(acf[p] <= max(around) + band)
        if not repeat:
            accepted.append((p, prominence))
    accepted.sort(key=lambda pair: -acf[pair[0]])
    return [
        Period(
            period_s=float(p * bin_s),
            acf=float(acf[p]),
            prominence=prominence,
            z=float(acf[p] * np.sqrt(n)),
            p_value=float(stats.norm.sf(acf[p] * np.sqrt(n))),
            significant=bool(stats.norm.sf(acf[p] * np.sqrt(n)) < 0.05 / lag.size),
        )
        for p, prominence in accepted[:top]
    ]


def periodicity(
    table: pl.DataFrame, *, day_offset_s: float = 0.0, weekday0: int | None = None, top: int = 3
) -> Periodicity:
    """Hour-of-day and weekday profiles, and the ``top`` de-duplicated, detrended
    autocorrelation peaks with their significance."""
    arrival = table["arrival_s"].to_numpy()
    span = float(arrival[-1] - arrival[0]) if arrival.size else 0.0
    bin_s = 60.0 if span < 2 * DAY_S else 600.0
    counts = counts_per_bin(table, bin_s).astype(np.float64)
    found = dominant_periods(counts, bin_s, top=top)
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
        dominant_periods_s=[p.period_s for p in found],
        dominant_acf=[p.acf for p in found],
        white_noise_band=float(1.96 / np.sqrt(counts.size)) if counts.size else None,
        periods=found,
        note="; ".join(notes) or None,
    )


def _dense(groups: pl.DataFrame, key: str, size: int) -> tuple[list[int], list[int]]:
    n, t = [0] * size, [0] * size
    for k, count, total in groups.select(key, "n", "t").iter_rows():
        n[k], t[k] = int(count), int(total)
    return n, t
