"""``trace info``: the headline numbers of a request table.

Rates are requests per second. Peaks come from fixed bins aligned to the start
of the table: the busiest 1-second bin, and the busiest 1-minute bin divided
by 60. Token statistics are per model x log type; p50/p99 are the sample values
nearest to the quantile position (polars "nearest"), so they always occur.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from burstlab.trace.load_report import LoadReport


class ClassStats(BaseModel):
    """One model x log type class: counts, failure rate and token quantiles."""

    model_config = ConfigDict(extra="forbid")

    model: str | None
    log_type: str | None
    count: int
    share: float
    failure_rate: float
    input_mean: float
    input_p50: int
    input_p99: int
    output_mean: float
    output_p50: int
    output_p99: int


class SessionStats(BaseModel):
    """Conversation structure, when the table has sessions."""

    model_config = ConfigDict(extra="forbid")

    sessions: int
    requests_in_sessions: int
    turns_mean: float
    turns_p50: int
    turns_max: int
    single_turn_share: float


class TraceInfo(BaseModel):
    """Everything ``burstlab trace info`` prints; ``--json`` dumps this object."""

    model_config = ConfigDict(extra="forbid")

    rows: int
    span_s: float
    mean_rps: float
    peak_rps_1s: float
    peak_rps_1m: float
    failure_rate: float
    sessions: int
    session_stats: SessionStats | None
    input_tokens_total: int
    output_tokens_total: int
    breakdown: list[ClassStats]
    load: LoadReport | None = None


def counts_per_bin(table: pl.DataFrame, width_s: float) -> np.ndarray:
    """Requests in each ``width_s``-second bin from time 0 (bins after the last arrival
    are not included), as an int64 array.

    ``arrival_s`` is sorted in a canonical table, so the counts are differences
    of binary searches: no per-row work beyond the search, and no memory per row.
    """
    if width_s <= 0:
        raise ValueError(f"bin width must be positive, got {width_s}")
    arrival = table["arrival_s"].to_numpy()
    if arrival.size == 0:
        return np.zeros(0, dtype=np.int64)
    edges = np.arange(int(arrival[-1] // width_s) + 2) * width_s
    return np.diff(np.searchsorted(arrival, edges, side="left")).astype(np.int64)


def trace_info(table: pl.DataFrame, report: LoadReport | None = None) -> TraceInfo:
    """Summarise a canonical request table (all vectorised; ~1 s for 10M rows)."""
    n = table.height
    head = table.select(
        span=pl.col("arrival_s").max() - pl.col("arrival_s").min(),
        failed=pl.col("failed").mean(),
        sessions=pl.col("session_id").n_unique() - pl.col("session_id").null_count().clip(0, 1),
        inp=pl.col("input_tokens").cast(pl.Int64).sum(),
        out=pl.col("output_tokens").cast(pl.Int64).sum(),
    ).row(0, named=True)
    span = float(head["span"] or 0.0)
    breakdown = (
        table.group_by("model", "log_type")
        .agg(
            count=pl.len(),
            failure_rate=pl.col("failed").mean(),
            input_mean=pl.col("input_tokens").mean(),
            input_p50=pl.col("input_tokens").quantile(0.5, "nearest"),
            input_p99=pl.col("input_tokens").quantile(0.99, "nearest"),
            output_mean=pl.col("output_tokens").mean(),
            output_p50=pl.col("output_tokens").quantile(0.5, "nearest"),
            output_p99=pl.col("output_tokens").quantile(0.99, "nearest"),
        )
        .with_columns(
            pl.col("model").cast(pl.String),
            pl.col("log_type").cast(pl.String),
            share=pl.col("count") / n,
        )
        .sort("count", descending=True)
    )
    return TraceInfo(
        rows=n,
        span_s=span,
        mean_rps=n / span if span > 0 else float(n),
        peak_rps_1s=float(counts_per_bin(table, 1.0).max(initial=0)),
        peak_rps_1m=float(counts_per_bin(table, 60.0).max(initial=0)) / 60.0,
        failure_rate=float(head["failed"] or 0.0),
        sessions=int(head["sessions"]),
        session_stats=_session_stats(table) if head["sessions"] else None,
        input_tokens_total=int(head["inp"] or 0),
        output_tokens_total=int(head["out"] or 0),
        breakdown=[ClassStats(**row) for row in breakdown.iter_rows(named=True)],
        load=report,
    )


def _session_stats(table: pl.DataFrame) -> SessionStats:
    turns = (
        table.filter(pl.col("session_id").is_not_null()).group_by("session_id").agg(n=pl.len())["n"]
    )
    return SessionStats(
        sessions=turns.len(),
        requests_in_sessions=int(turns.sum()),
        turns_mean=float(turns.mean() or 0.0),  # type: ignore[arg-type]
        turns_p50=int(turns.quantile(0.5, "nearest") or 0),
        turns_max=int(turns.max() or 0),  # type: ignore[arg-type]
        single_turn_share=float((turns == 1).mean() or 0.0),  # type: ignore[arg-type]
    )
