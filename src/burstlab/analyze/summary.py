"""One call for the whole analysis, filters, and the comparison of two tables."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict
from scipy import stats

from burstlab.analyze.arrival_fits import (
    ClassArrivals,
    GapCheck,
    WorkdaySlots,
    class_arrivals,
    gap_check,
    workday_slots,
)
from burstlab.analyze.burstiness import Burstiness, burstiness
from burstlab.analyze.calendar import Calendar, calendar, origin_of
from burstlab.analyze.conversations import Conversations, conversations
from burstlab.analyze.elapsed import Elapsed, elapsed
from burstlab.analyze.failures import Failures, failures
from burstlab.analyze.lengths import ClassLengths, lengths
from burstlab.analyze.periodicity import Periodicity, periodicity
from burstlab.core.errors import InputError
from burstlab.trace.readers import LoadReport


class Filters(BaseModel):
    """Which rows were analysed: model, log type and a time window ``[start_s, end_s)``."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    log_type: str | None = None
    start_s: float | None = None
    end_s: float | None = None


class Summary(BaseModel):
    """Everything ``burstlab analyze`` finds; written as ``summary.json``."""

    model_config = ConfigDict(extra="forbid")

    source: str
    rows: int
    span_s: float
    filters: Filters
    burstiness: Burstiness
    gap_check: GapCheck
    class_arrivals: list[ClassArrivals]
    workday_slots: WorkdaySlots
    periodicity: Periodicity
    calendar: Calendar
    lengths: list[ClassLengths]
    conversations: Conversations | None
    failures: Failures
    elapsed: Elapsed | None


def apply_filters(table: pl.DataFrame, filters: Filters) -> pl.DataFrame:
    """Rows matching the filters, with ``arrival_s`` still counted from the table's start."""
    arrival = table["arrival_s"].to_numpy()
    span = (float(arrival.min()), float(arrival.max())) if arrival.size else (0.0, 0.0)
    out = table
    if filters.model is not None:
        out = out.filter(pl.col("model").cast(pl.String) == filters.model)
    if filters.log_type is not None:
        out = out.filter(pl.col("log_type").cast(pl.String) == filters.log_type)
    if filters.start_s is not None:
        out = out.filter(pl.col("arrival_s") >= filters.start_s)
    if filters.end_s is not None:
        out = out.filter(pl.col("arrival_s") < filters.end_s)
    if out.height < 3:
        models = ", ".join(sorted({str(m) for m in table["model"].unique().to_list()}))
        raise InputError(
            f"the filters select {out.height} rows (need at least 3); the table spans "
            f"[{span[0]:g}, {span[1]:g}] s with models {models or '-'}",
            hint="check --model, --log-type, --start and --end",
        )
    return out


#: The parts :func:`analyze` computes, in order: what its ``progress`` is told.
ANALYSIS_PARTS = (
    "burstiness",
    "gap fits",
    "arrivals per class",
    "work-day slots",
    "periodicity",
    "calendar",
    "lengths",
    "conversations",
    "failures",
    "elapsed times",
)


def analyze(
    table: pl.DataFrame,
    report: LoadReport | None = None,
    *,
    filters: Filters | None = None,
    window_s: float = 1200.0,
    seed: int = 0,
    origin: datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> Summary:
    """Burstiness (with the gap fits' goodness of fit, fits per model x log type and the
    work-day alpha/beta per 20 minutes of day), periodicity, calendar, lengths,
    conversations, failures and the source's elapsed times of ``table``.

    ``origin`` is the wall-clock time at ``arrival_s = 0``; without it the trace's own
    clock is used when it has one (see :func:`burstlab.analyze.calendar.origin_of`).
    ``progress`` is told the name of each part (:data:`ANALYSIS_PARTS`) as it starts."""
    say = progress or (lambda _: None)
    filters = filters or Filters()
    part = apply_filters(table, filters)
    offset, weekday, when, source = origin_of(report, origin)
    say(ANALYSIS_PARTS[0])
    burst = burstiness(part, window_s=window_s, seed=seed)
    arrival = part["arrival_s"].to_numpy()
    say(ANALYSIS_PARTS[1])
    checked = gap_check(arrival, burst.gaps)
    say(ANALYSIS_PARTS[2])
    per_class = class_arrivals(part, burst.gaps)
    say(ANALYSIS_PARTS[3])
    slots = workday_slots(
        arrival,
        day_offset_s=offset,
        weekday0=weekday,
        resolution=burst.gaps.resolution,
        windows=burst.windows,
    )
    say(ANALYSIS_PARTS[4])
    periods = periodicity(part, day_offset_s=offset, weekday0=weekday)
    say(ANALYSIS_PARTS[5])
    days = calendar(part, day_offset_s=offset, weekday0=weekday, origin=when, origin_from=source)
    say(ANALYSIS_PARTS[6])
    sizes = lengths(part)
    say(ANALYSIS_PARTS[7])
    sessions = conversations(part)
    say(ANALYSIS_PARTS[8])
    failed = failures(part, burst.windows)
    say(ANALYSIS_PARTS[9])
    took = elapsed(part)
    return Summary(
        source=report.source if report else "table",
        rows=part.height,
        span_s=float(np.ptp(arrival)),
        filters=filters,
        burstiness=burst,
        gap_check=checked,
        class_arrivals=per_class,
        workday_slots=slots,
        periodicity=periods,
        calendar=days,
        lengths=sizes,
        conversations=sessions,
        failures=failed,
        elapsed=took,
    )


class Comparison(BaseModel):
    """Two tables side by side: KS distances and headline differences (``b - a``)."""

    model_config = ConfigDict(extra="forbid")

    a: str
    b: str
    ks_interarrival: float
    ks_input_tokens: float
    ks_output_tokens: float
    headline: dict[str, tuple[float | None, float | None, float | None]]


def headline(summary: Summary) -> dict[str, float | None]:
    """The numbers a comparison puts side by side."""
    b = summary.burstiness
    return {
        "rows": float(summary.rows),
        "mean_rps": b.mean_rps,
        "cv": b.cv,
        "gamma_shape": b.gaps.gamma.shape if b.gaps.gamma.identifiable else None,
        "gamma_scale": b.gaps.gamma.scale if b.gaps.gamma.identifiable else None,
        **{f"idc_{k}": v for k, v in b.dispersion.idc.items()},
        "peak_to_mean": b.peak_to_mean,
        "failure_rate": summary.failures.failure_rate,
        "input_mean": _mean(
            [c.request.mean for c in summary.lengths], [c.request.count for c in summary.lengths]
        ),
        "output_mean": _mean(
            [c.response.mean for c in summary.lengths], [c.response.count for c in summary.lengths]
        ),
    }


def _mean(values: list[float], weights: list[int]) -> float | None:
    return float(np.average(values, weights=weights)) if sum(weights) else None


def compare(a: tuple[pl.DataFrame, Summary], b: tuple[pl.DataFrame, Summary]) -> Comparison:
    """KS distances of inter-arrivals and lengths, and every headline difference."""
    (ta, sa), (tb, sb) = a, b

    def ks(column: str, transform: str = "") -> float:
        xa, xb = ta[column].to_numpy(), tb[column].to_numpy()
        if transform == "diff":
            xa, xb = np.diff(xa), np.diff(xb)
        return float(stats.ks_2samp(xa, xb, method="asymp").statistic)

    ha, hb = headline(sa), headline(sb)
    return Comparison(
        a=sa.source,
        b=sb.source,
        ks_interarrival=ks("arrival_s", "diff"),
        ks_input_tokens=ks("input_tokens"),
        ks_output_tokens=ks("output_tokens"),
        headline={
            k: (ha[k], hb[k], None if ha[k] is None or hb[k] is None else hb[k] - ha[k])  # type: ignore[operator]
            for k in ha
        },
    )
