"""Load on the calendar: weekday x hour, the week, the rate inside each hour, tokens per hour.

Everything here needs the table's wall clock: ``day_offset_s`` is the time of
day (seconds after midnight) at ``arrival_s = 0`` and ``weekday0`` the weekday
then (0 = Monday), from ``--origin`` or a datetime trace (see
:func:`origin_of`). Hour slots are aligned to the wall clock. A slot the table
covers only in part (its first and last) counts for the part covered, so
"requests per hour" is always requests over hours observed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from burstlab.analyze.periodicity import DAY_S, clock_of
from burstlab.core.errors import InputError
from burstlab.trace.readers import LoadReport

HOUR_S = 3600.0
WEEK_S = 7 * DAY_S
#: The tokens-per-hour series joins whole hours into one bin to stay under this many bins.
MAX_SERIES_BINS = 10_000
#: A table spanning less than a day gets its tokens series in bins this long instead.
SHORT_BIN_S = 300.0


class Quantiles(BaseModel):
    """5th, 25th, 50th, 75th and 95th percentiles and the mean of one sample."""

    model_config = ConfigDict(extra="forbid")

    p5: float
    p25: float
    p50: float
    p75: float
    p95: float
    mean: float


def quantiles(x: np.ndarray) -> Quantiles | None:
    """The :class:`Quantiles` of ``x`` (linear interpolation), None when it is empty."""
    if x.size == 0:
        return None
    p5, p25, p50, p75, p95 = np.quantile(x, [0.05, 0.25, 0.5, 0.75, 0.95])
    return Quantiles(
        p5=float(p5),
        p25=float(p25),
        p50=float(p50),
        p75=float(p75),
        p95=float(p95),
        mean=float(x.mean()),
    )


class WeekdayHour(BaseModel):
    """Mean requests per hour in each weekday (row, 0 = Monday) x hour-of-day (column) cell:
    requests in that cell over hours observed in it (null where none was)."""

    model_config = ConfigDict(extra="forbid")

    requests_per_hour: list[list[float | None]]
    hours_observed: list[list[float]]


class WeeklyProfile(BaseModel):
    """Requests per hour over the 168 hours of a week (hour 0 = Monday 00:00): the mean
    over every week observed, and the lowest and highest fully observed hour (null where
    none was), across ``weeks`` weeks of span."""

    model_config = ConfigDict(extra="forbid")

    weeks: float
    mean: list[float | None]
    low: list[float | None]
    high: list[float | None]


class HourlyRate(BaseModel):
    """For each hour of day, the distribution of the request rate (requests/s) measured
    in ``bin_s`` bins inside that hour, across days (``bins`` per hour; null where none).
    The first and last bin of the table are partial and left out."""

    model_config = ConfigDict(extra="forbid")

    bin_s: float
    hours: list[Quantiles | None]
    bins: list[int]


class TokensPerHour(BaseModel):
    """Request (input) and response (output) tokens per hour: the mean for each hour of
    day (over hours observed; null where none), and the tokens in each ``series_bin_s``
    bin over the trace (whole hours; 5 minutes when the table spans less than a day)
    from ``series_start_s`` (``arrival_s`` of the first bin's start, on the wall clock,
    so it may be negative)."""

    model_config = ConfigDict(extra="forbid")

    hour_input: list[float | None]
    hour_output: list[float | None]
    series_bin_s: float
    series_start_s: float
    series_input: list[int]
    series_output: list[int]


class Calendar(BaseModel):
    """The calendar analyses of one table; a null field's reason is in ``note``.

    ``origin`` is the wall-clock time at ``arrival_s = 0`` (ISO) when known, and
    ``origin_from`` says whether ``--origin`` or the trace gave it. Without one,
    the table starts at midnight of an unknown weekday (or at the time of day the
    source's clock gives, as BurstGPT's does).
    """

    model_config = ConfigDict(extra="forbid")

    origin: str | None
    origin_from: Literal["option", "trace"] | None
    day_offset_s: float
    weekday0: int | None
    weekday_hour: WeekdayHour | None
    weekly: WeeklyProfile | None
    hourly_rate: HourlyRate | None
    tokens_per_hour: TokensPerHour
    note: str | None


def parse_origin(text: str) -> datetime:
    """``--origin`` as a datetime; an :class:`InputError` naming the option otherwise."""
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(
            f"--origin {text!r} is not an ISO datetime (e.g. 2023-01-02T00:00:00: the wall-clock "
            "time of arrival_s = 0)"
        ) from None


def _trace_origin(report: LoadReport | None) -> datetime | None:
    if report is None or report.origin is None:
        return None
    try:
        return datetime.fromisoformat(report.origin[:26])
    except ValueError:
        return None


def origin_of(
    report: LoadReport | None, given: datetime | None = None
) -> tuple[float, int | None, datetime | None, Literal["option", "trace"] | None]:
    """(time of day at arrival_s = 0 in seconds, weekday then, the origin, where it came
    from): ``given`` wins, then a datetime in the trace, then :func:`clock_of`."""
    if given is not None:
        return (*_clock(given), given, "option")
    found = _trace_origin(report)
    if found is not None:
        return (*_clock(found), found, "trace")
    offset, weekday = clock_of(report)
    return offset, weekday, None, None


def _clock(when: datetime) -> tuple[float, int]:
    midnight = when.replace(hour=0, minute=0, second=0, microsecond=0)
    return (when - midnight).total_seconds(), when.weekday()


def _none_where(values: np.ndarray, keep: np.ndarray) -> list[float | None]:
    return [float(v) if k else None for v, k in zip(values, keep, strict=True)]


def calendar(
    table: pl.DataFrame,
    *,
    day_offset_s: float = 0.0,
    weekday0: int | None = None,
    origin: datetime | None = None,
    origin_from: Literal["option", "trace"] | None = None,
    rate_bin_s: float = 60.0,
) -> Calendar:
    """Weekday x hour, weekly profile, per-hour rate boxes and tokens per hour of ``table``."""
    wall = table["arrival_s"].to_numpy().astype(np.float64) + day_offset_s
    first, last = float(wall.min()), float(wall.max())
    span = last - first
    slot = np.floor(wall / HOUR_S).astype(np.int64)
    s0, s1 = int(np.floor(first / HOUR_S)), int(np.floor(last / HOUR_S))
    slots = np.arange(s0, s1 + 1)
    start = slots * HOUR_S
    covered = (np.minimum(start + HOUR_S, last) - np.maximum(start, first)) / HOUR_S
    covered = np.clip(covered, 0.0, 1.0)
    if span <= 0:
        covered[:] = 1.0  # one instant: count it as one hour observed
    index = slot - s0
    requests = np.bincount(index, minlength=slots.size).astype(np.float64)
    inp = np.bincount(index, weights=table["input_tokens"].to_numpy(), minlength=slots.size)
    out = np.bincount(index, weights=table["output_tokens"].to_numpy(), minlength=slots.size)
    hour = slots % 24
    notes: list[str] = []

    seen = np.bincount(hour, weights=covered, minlength=24)
    tokens = _tokens(seen, hour, inp, out, start_s=s0 * HOUR_S - day_offset_s)
    if span < DAY_S:  # hourly bins would show a day or less as a few steps
        short = _short_series(table, wall, day_offset_s)
        tokens = tokens.model_copy(
            update={
                k: getattr(short, k)
                for k in ("series_bin_s", "series_start_s", "series_input", "series_output")
            }
        )

    weekday_hour = weekly = None
    if weekday0 is None:
        notes.append("weekday x hour and weekly profile need a calendar start: pass --origin")
    elif span < WEEK_S:
        notes.append("weekday x hour and weekly profile need at least a week")
    else:
        cell = ((weekday0 + slots // 24) % 7) * 24 + hour
        observed = np.bincount(cell, weights=covered, minlength=168)
        total = np.bincount(cell, weights=requests, minlength=168)
        mean = np.divide(total, observed, out=np.zeros(168), where=observed > 0)
        full = covered >= 1.0
        low = np.full(168, np.inf)
        high = np.full(168, -np.inf)
        np.minimum.at(low, cell[full], requests[full])
        np.maximum.at(high, cell[full], requests[full])
        weekday_hour = WeekdayHour(
            requests_per_hour=[
                _none_where(mean[d * 24 : d * 24 + 24], observed[d * 24 : d * 24 + 24] > 0)
                for d in range(7)
            ],
            hours_observed=[[float(v) for v in observed[d * 24 : d * 24 + 24]] for d in range(7)],
        )
        weekly = WeeklyProfile(
            weeks=span / WEEK_S,
            mean=_none_where(mean, observed > 0),
            low=_none_where(low, np.isfinite(low)),
            high=_none_where(high, np.isfinite(high)),
        )

    hourly_rate = None
    if span < DAY_S:
        notes.append("per-hour rate boxes need at least a day")
    else:
        hourly_rate = _hourly_rate(wall, first, last, rate_bin_s)
    return Calendar(
        origin=origin.isoformat() if origin is not None else None,
        origin_from=origin_from,
        day_offset_s=day_offset_s,
        weekday0=weekday0,
        weekday_hour=weekday_hour,
        weekly=weekly,
        hourly_rate=hourly_rate,
        tokens_per_hour=tokens,
        note="; ".join(notes) or None,
    )


def _tokens(
    seen: np.ndarray, hour: np.ndarray, inp: np.ndarray, out: np.ndarray, *, start_s: float
) -> TokensPerHour:
    by_hour = [
        np.divide(
            np.bincount(hour, weights=v, minlength=24),
            seen,
            out=np.zeros(24),
            where=seen > 0,
        )
        for v in (inp, out)
    ]
    join = max(1, -(-inp.size // MAX_SERIES_BINS))
    pad = -inp.size % join
    series = [np.append(v, np.zeros(pad)).reshape(-1, join).sum(axis=1) for v in (inp, out)]
    return TokensPerHour(
        hour_input=_none_where(by_hour[0], seen > 0),
        hour_output=_none_where(by_hour[1], seen > 0),
        series_bin_s=join * HOUR_S,
        series_start_s=start_s,
        series_input=[int(v) for v in np.rint(series[0])],
        series_output=[int(v) for v in np.rint(series[1])],
    )


def _short_series(table: pl.DataFrame, wall: np.ndarray, day_offset_s: float) -> TokensPerHour:
    """The series part of :class:`TokensPerHour` in :data:`SHORT_BIN_S` bins."""
    b = np.floor(wall / SHORT_BIN_S).astype(np.int64)
    b0 = int(b.min())
    size = int(b.max()) - b0 + 1
    inp = np.bincount(b - b0, weights=table["input_tokens"].to_numpy(), minlength=size)
    out = np.bincount(b - b0, weights=table["output_tokens"].to_numpy(), minlength=size)
    return TokensPerHour(
        hour_input=[],
        hour_output=[],
        series_bin_s=SHORT_BIN_S,
        series_start_s=b0 * SHORT_BIN_S - day_offset_s,
        series_input=[int(v) for v in np.rint(inp)],
        series_output=[int(v) for v in np.rint(out)],
    )


def _hourly_rate(wall: np.ndarray, first: float, last: float, bin_s: float) -> HourlyRate:
    b0, b1 = int(np.floor(first / bin_s)), int(np.floor(last / bin_s))
    counts = np.bincount(np.floor(wall / bin_s).astype(np.int64) - b0, minlength=b1 - b0 + 1)
    bins = np.arange(b0, b1 + 1)[1:-1]  # the first and last bins are partial
    rate = counts[1:-1] / bin_s
    hour = ((bins * bin_s) // HOUR_S).astype(np.int64) % 24
    per = (
        pl.DataFrame({"h": hour, "r": rate})
        .group_by("h")
        .agg(
            p5=pl.col("r").quantile(0.05, "linear"),
            p25=pl.col("r").quantile(0.25, "linear"),
            p50=pl.col("r").quantile(0.5, "linear"),
            p75=pl.col("r").quantile(0.75, "linear"),
            p95=pl.col("r").quantile(0.95, "linear"),
            mean=pl.col("r").mean(),
            n=pl.len(),
        )
    )
    hours: list[Quantiles | None] = [None] * 24
    counted = [0] * 24
    for row in per.iter_rows(named=True):  # at most 24 rows
        h = int(row.pop("h"))
        counted[h] = int(row.pop("n"))
        hours[h] = Quantiles(**row)
    return HourlyRate(bin_s=bin_s, hours=hours, bins=counted)
