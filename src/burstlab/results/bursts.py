"""Latency inside a run's bursts against the rest, and how long the server took to recover."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from burstlab.results.metrics import percentile, quantile


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Side(_Model):
    """Requests arriving inside (or outside) the busiest windows: their failure
    rate and the mean and p99 of E2E and TTFT over ``ok`` ones (seconds)."""

    requests: int
    failure_rate: float | None
    e2e_mean_s: float | None
    e2e_p99_s: float | None
    ttft_mean_s: float | None
    ttft_p99_s: float | None


class BurstRecovery(_Model):
    """One burst (a run of busy windows, seconds of intended time) and its recovery time."""

    start_s: float
    end_s: float
    recovery_s: float | None


class Recovery(_Model):
    """Recovery after every burst; see :func:`recovery`."""

    step_s: float
    baseline_ttft_p90_s: float | None
    limit_s: float | None = None
    bursts: list[BurstRecovery] = Field(default_factory=list)
    recovery_mean_s: float | None = None
    recovery_max_s: float | None = None
    not_recovered: int = 0


class BurstView(_Model):
    """The busiest ``window_s`` windows by arrivals (``busy_windows`` of them) against the rest."""

    window_s: float
    busy_windows: int
    burst: Side
    rest: Side
    recovery: Recovery


def burst_view(records: pl.DataFrame, window_s: float, top: float = 0.1) -> BurstView:
    """Latency inside the busiest ``top`` share of ``window_s`` windows (by arrivals)
    against the rest, and how long the server took to recover after each burst."""
    win = (records["arrival_s"] // window_s).cast(pl.Int64)
    counts = win.value_counts()
    cut = percentile(counts["count"], 100 * (1 - top)) or 0.0
    busy = sorted(counts.filter(pl.col("count") >= cut)[win.name].to_list())
    inside = win.is_in(busy)
    sides = {}
    for name, part in (("burst", records.filter(inside)), ("rest", records.filter(~inside))):
        ok = part.filter(pl.col("outcome") == "ok")
        sides[name] = Side(
            requests=part.height,
            failure_rate=1 - ok.height / part.height if part.height else None,
            e2e_mean_s=_mean(ok["e2e_s"]),
            e2e_p99_s=percentile(ok["e2e_s"], 99),
            ttft_mean_s=_mean(ok["ttft_s"]),
            ttft_p99_s=percentile(ok["ttft_s"], 99),
        )
    episodes: list[list[float]] = []
    for w in busy:
        if episodes and episodes[-1][1] == w * window_s:
            episodes[-1][1] = (w + 1) * window_s
        else:
            episodes.append([w * window_s, (w + 1) * window_s])
    return BurstView(
        window_s=window_s,
        busy_windows=len(busy),
        recovery=recovery(records, [(a, b) for a, b in episodes], max(window_s / 10, 0.1)),
        **sides,
    )


def _mean(series: pl.Series) -> float | None:
    value = series.mean()
    return None if value is None else float(value)  # type: ignore[arg-type]


def recovery(records: pl.DataFrame, bursts: list[tuple[float, float]], step_s: float) -> Recovery:
    """Seconds from the end of each burst until requests are served as usual again.

    Requests are grouped by arrival into ``step_s`` windows. The baseline is the
    median, over windows outside every burst, of the window's TTFT p90 (failed
    requests count as infinitely slow). A window is *recovered* when its TTFT p90
    is at most ``max(2 x baseline, baseline + 0.05 s)``; a burst's recovery time is
    the start of the first recovered window at or after the burst's end, minus
    that end (0: the engine absorbed it), or None if none comes before the next
    burst or the end of the run. Resolution: ``step_s``.
    """
    ttft = np.where(
        (records["outcome"] == "ok").to_numpy(),
        records["ttft_s"].fill_null(np.inf).to_numpy(),
        np.inf,
    )
    step = np.floor(records["arrival_s"].to_numpy() / step_s).astype(np.int64)
    frame = pl.DataFrame({"step": step, "ttft": ttft})
    per = frame.group_by("step").agg(quantile(pl.col("ttft"), 90)).sort("step")
    starts = per["step"].to_numpy() * step_s
    p90 = per["ttft"].to_numpy()
    outside = np.ones(starts.size, dtype=bool)
    for a, b in bursts:
        outside &= ~((starts + step_s > a) & (starts < b))
    finite = p90[outside & np.isfinite(p90)]
    if finite.size == 0:
        return Recovery(step_s=step_s, baseline_ttft_p90_s=None)
    base = float(np.median(finite))
    limit = max(2 * base, base + 0.05)
    out = Recovery(step_s=step_s, baseline_ttft_p90_s=base, limit_s=limit)
    times: list[float | None] = []
    for i, (a, b) in enumerate(bursts):
        until = bursts[i + 1][0] if i + 1 < len(bursts) else math.inf
        after = (starts >= b - 1e-9) & (starts < until) & (p90 <= limit)
        seconds = max(0.0, round(float(starts[after][0] - b), 9)) if after.any() else None
        times.append(seconds)
        out.bursts.append(BurstRecovery(start_s=a, end_s=b, recovery_s=seconds))
    known = [t for t in times if t is not None]
    out.recovery_mean_s = float(np.mean(known)) if known else None
    out.recovery_max_s = max(known) if known else None
    out.not_recovered = len(times) - len(known)
    return out
