"""How faithful a workload is to its source: rates, burstiness and length distributions.

The source is summarised once as a :class:`Reference` (from a trace, or stored
in a fitted model), so replayed and modelled workloads are judged the same way.
A workload usually runs at another rate than its source: ``time_scale`` says
how many times faster. Scale-free statistics (CV, Gamma shape, KS of gaps
divided by their mean, length KS) compare directly; the index of dispersion
and per-window rates compare over the same stretch of *trace* time, so the
workload's bins are ``time_scale`` times shorter. KS distances are taken
against the source's quantile function (1,001 points, so 0.001 resolution).
"""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from burstlab.analyze.burstiness import arrival_stats, window_series
from burstlab.trace.info import counts_per_bin

QUANTILE_POINTS = 1001
IDC_TRACE_BINS_S = (1.0, 60.0)


class Reference(BaseModel):
    """What a workload is compared against: the source's statistics (times in trace time)."""

    model_config = ConfigDict(extra="forbid")

    requests: int
    mean_rps: float
    cv: float
    gamma_shape: float | None
    idc: dict[str, float | None]
    window_s: float
    window_rate_rps: list[float]
    gap_quantiles: list[float]
    input_quantiles: list[float]
    output_quantiles: list[float]


class Pair(BaseModel):
    """One statistic of the source and of the workload."""

    model_config = ConfigDict(extra="forbid")

    source: float | None
    workload: float | None


class Fidelity(BaseModel):
    """Workload against source. ``window_s`` and the IDC bins are in trace time (the
    workload's times multiplied by ``time_scale``); ``window_rate_error`` is the median
    absolute relative error of per-window rates there."""

    model_config = ConfigDict(extra="forbid")

    time_scale: float
    requests: Pair
    mean_rps: Pair
    cv: Pair
    gamma_shape: Pair
    idc_1s: Pair
    idc_60s: Pair
    window_s: float
    window_rate_error: float | None
    ks_interarrival: float
    ks_input_tokens: float
    ks_output_tokens: float


def _rate(arrival: np.ndarray) -> float:
    span = float(arrival[-1] - arrival[0]) if arrival.size > 1 else 0.0
    return arrival.size / span if span > 0 else float("nan")


def _idc(arrival: np.ndarray, width_s: float) -> float | None:
    counts = counts_per_bin(pl.DataFrame({"arrival_s": arrival - arrival[0]}), width_s)[:-1]
    return float(counts.var() / counts.mean()) if counts.size >= 2 and counts.mean() > 0 else None


def _normalised_gaps(arrival: np.ndarray) -> np.ndarray:
    """Gaps over their mean, rounded to 1e-9 so float noise cannot split ties."""
    gaps = np.diff(arrival)
    mean = gaps.mean() if gaps.size else 0.0
    out: np.ndarray = np.round(gaps / mean, 9) if mean > 0 else gaps
    return out


def _quantiles(x: np.ndarray) -> list[float]:
    if x.size == 0:
        return [0.0, 0.0]
    values: list[float] = np.quantile(x, np.linspace(0, 1, QUANTILE_POINTS)).tolist()
    return values


def reference(table: pl.DataFrame, *, window_s: float = 60.0) -> Reference:
    """Summarise a source table for later comparisons."""
    arrival = table["arrival_s"].to_numpy()
    arrival = arrival - arrival[0]
    summary = arrival_stats(arrival)
    return Reference(
        requests=arrival.size,
        mean_rps=_rate(arrival),
        cv=summary.cv,
        gamma_shape=summary.gamma.shape,
        idc={f"{b:g}s": _idc(arrival, b) for b in IDC_TRACE_BINS_S},
        window_s=window_s,
        window_rate_rps=window_series(arrival, window_s).rate_rps,
        gap_quantiles=_quantiles(_normalised_gaps(arrival)),
        input_quantiles=_quantiles(table["input_tokens"].to_numpy()),
        output_quantiles=_quantiles(table["output_tokens"].to_numpy()),
    )


def _ks(sample: np.ndarray, quantiles: list[float]) -> float:
    """KS distance between ``sample`` and the distribution with these quantiles.

    Both CDFs are evaluated as right-continuous steps on the union of their
    values, so integer token counts (with many ties) compare exactly; the
    reference's resolution is 1 / (points - 1).
    """
    q = np.asarray(quantiles)
    ordered = np.sort(sample)
    grid = np.unique(np.concatenate([ordered, q]))
    ref = np.clip((np.searchsorted(q, grid, side="right") - 1) / (q.size - 1), 0.0, 1.0)
    emp = np.searchsorted(ordered, grid, side="right") / max(ordered.size, 1)
    return float(np.abs(emp - ref).max())


def fidelity(ref: Reference, workload: pl.DataFrame, *, time_scale: float = 1.0) -> Fidelity:
    """Compare ``workload`` (its own clock) with the source summarised in ``ref``."""
    gen = workload["arrival_s"].to_numpy()
    gen = gen - gen[0]
    g_stats = arrival_stats(gen)
    # back in trace time (to the microsecond, so a replay lands on the source's own instants)
    in_trace = np.round(gen * time_scale, 6)
    got = np.asarray(window_series(in_trace, ref.window_s).rate_rps)
    expected = np.asarray(ref.window_rate_rps)
    n = min(got.size, expected.size)
    ok = expected[:n] > 0
    error = (
        float(np.median(np.abs(got[:n][ok] - expected[:n][ok]) / expected[:n][ok]))
        if ok.any() else None
    )  # fmt: skip
    return Fidelity(
        time_scale=time_scale,
        requests=Pair(source=float(ref.requests), workload=float(gen.size)),
        mean_rps=Pair(source=ref.mean_rps, workload=_rate(gen)),
        cv=Pair(source=ref.cv, workload=g_stats.cv),
        gamma_shape=Pair(source=ref.gamma_shape, workload=g_stats.gamma.shape),
        idc_1s=Pair(source=ref.idc.get("1s"), workload=_idc(in_trace, 1.0)),
        idc_60s=Pair(source=ref.idc.get("60s"), workload=_idc(in_trace, 60.0)),
        window_s=ref.window_s,
        window_rate_error=error,
        ks_interarrival=_ks(_normalised_gaps(in_trace), ref.gap_quantiles),
        ks_input_tokens=_ks(workload["input_tokens"].to_numpy(), ref.input_quantiles),
        ks_output_tokens=_ks(workload["output_tokens"].to_numpy(), ref.output_quantiles),
    )
