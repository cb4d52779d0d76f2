"""Replay: a window of a real trace, filtered, rebased to 0 and time-scaled.

A workload is a canonical request table whose ``arrival_s`` is the intended
send time. Scaling multiplies every arrival by one factor, so the shape of the
arrival process (inter-arrival CV, Gamma shape, bursts) is unchanged and only
the rate moves. One convention everywhere: ``speedup=2`` plays the trace twice
as fast; ``rps=X`` picks the speedup whose mean rate (requests / span, as in
``trace info``) is exactly X.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from burstlab.core.errors import InputError

DAY_S = 86_400.0


class ReplaySpec(BaseModel):
    """Which part of a trace to replay, and how fast (times in seconds)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start_s: float | None = Field(None, ge=0)
    end_s: float | None = Field(None, ge=0)
    day: int | None = Field(None, ge=0)
    busiest_s: float | None = Field(None, gt=0)
    model: str | None = None
    log_type: str | None = None
    drop_failed: bool = False
    limit: int | None = Field(None, ge=1)
    rps: float | None = Field(None, gt=0, allow_inf_nan=False)
    speedup: float | None = Field(None, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_way_each(self) -> ReplaySpec:
        windows = [
            self.start_s is not None or self.end_s is not None,
            self.day is not None,
            self.busiest_s is not None,
        ]
        if sum(windows) > 1:
            raise ValueError("give one of --start/--end, --day, --busiest")
        if self.rps is not None and self.speedup is not None:
            raise ValueError("give --rps or --speedup, not both")
        if self.start_s is not None and self.end_s is not None and self.end_s <= self.start_s:
            raise ValueError("--end must be after --start")
        return self


def busiest_window(arrival_s: np.ndarray, length_s: float) -> float:
    """Start of the ``length_s``-second window holding the most arrivals (earliest on ties).

    Candidate windows start at an arrival; a sorted array makes each count one
    binary search, so this is O(n log n) with no loop in Python.
    """
    ends = np.searchsorted(arrival_s, arrival_s + length_s, side="left")
    counts = ends - np.arange(arrival_s.size)
    return float(arrival_s[int(np.argmax(counts))])


def replay(table: pl.DataFrame, spec: ReplaySpec, *, day_offset_s: float = 0.0) -> pl.DataFrame:
    """The workload ``spec`` selects from ``table``: filtered, windowed, rebased, scaled.

    ``day_offset_s`` is the time of day at ``arrival_s == 0`` so that ``day=N``
    means calendar day N of the trace (day 0 is the partial first day).
    """
    out = table
    if spec.model is not None:
        out = out.filter(pl.col("model").cast(pl.String) == spec.model)
    if spec.log_type is not None:
        out = out.filter(pl.col("log_type").cast(pl.String) == spec.log_type)
    if spec.drop_failed:
        out = out.filter(~pl.col("failed"))
    arrival = out["arrival_s"].to_numpy()
    lo, hi = -math.inf, math.inf
    if spec.start_s is not None or spec.end_s is not None:
        lo = spec.start_s if spec.start_s is not None else -math.inf
        hi = spec.end_s if spec.end_s is not None else math.inf
    elif spec.day is not None:
        lo = spec.day * DAY_S - day_offset_s
        hi = lo + DAY_S
        lo = max(lo, 0.0)
    elif spec.busiest_s is not None and arrival.size:
        lo = busiest_window(arrival, spec.busiest_s)
        hi = lo + spec.busiest_s
    out = out.filter((pl.col("arrival_s") >= lo) & (pl.col("arrival_s") < hi))
    if spec.limit is not None:
        out = out.head(spec.limit)
    if out.height < 2:
        span = f"[{arrival.min():g}, {arrival.max():g}] s" if arrival.size else "nothing"
        raise InputError(
            f"the window [{lo:g}, {hi:g}) s and filters select {out.height} requests "
            f"(need at least 2); after the filters the trace spans {span}"
        )
    origin = lo if math.isfinite(lo) else float(out["arrival_s"][0])
    rebased = out.with_columns(pl.col("arrival_s") - origin)
    factor = speedup_for(rebased, spec)
    return rebased.with_columns(pl.col("arrival_s") / factor)


def speedup_for(table: pl.DataFrame, spec: ReplaySpec) -> float:
    """The factor that divides arrival times: ``speedup``, or the one that makes the mean
    rate (requests / span) exactly ``rps``; 1 when neither is given."""
    if spec.speedup is not None:
        return spec.speedup
    if spec.rps is None:
        return 1.0
    arrival = table["arrival_s"].to_numpy()
    span = float(arrival[-1] - arrival[0])
    if span <= 0:
        raise InputError("all selected requests arrive at the same instant: no rate to scale")
    return spec.rps * span / arrival.size
