"""How faithful a workload is to its source: rates, burstiness and length distributions.

A replayed or generated workload usually runs at another rate than its source
(``time_scale`` = how many times faster). Scale-free statistics (CV, Gamma
shape, KS of gaps divided by their mean, length KS) compare directly; the
index of dispersion and per-window rates are compared on the same stretch of
trace time: the source's bins are ``time_scale`` times longer than the
workload's.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict
from scipy import stats

from burstlab.analyze.burstiness import arrival_stats, window_series
from burstlab.trace.info import counts_per_bin


class Pair(BaseModel):
    """One statistic of the source and of the workload."""

    model_config = ConfigDict(extra="forbid")

    source: float | None
    workload: float | None


class Fidelity(BaseModel):
    """Workload against source; ``window_rate_error`` is the median absolute relative
    error of per-window rates (source rates times ``time_scale``)."""

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
    gaps = np.diff(arrival)
    mean = gaps.mean() if gaps.size else 0.0
    return gaps / mean if mean > 0 else gaps


def fidelity(
    source: pl.DataFrame,
    workload: pl.DataFrame,
    *,
    time_scale: float = 1.0,
    window_s: float = 60.0,
) -> Fidelity:
    """Compare ``workload`` (times in its own clock) with ``source`` (trace clock).

    ``window_s`` is the workload's window for per-window rates; the source's
    window is ``window_s * time_scale``.
    """
    src, gen = source["arrival_s"].to_numpy(), workload["arrival_s"].to_numpy()
    s_stats, g_stats = arrival_stats(src - src[0]), arrival_stats(gen - gen[0])
    s_win = window_series(src - src[0], window_s * time_scale)
    g_win = window_series(gen - gen[0], window_s)
    n = min(len(s_win.rate_rps), len(g_win.rate_rps))
    error = None
    if n:
        expected = np.asarray(s_win.rate_rps[:n]) * time_scale
        got = np.asarray(g_win.rate_rps[:n])
        ok = expected > 0
        if ok.any():
            error = float(np.median(np.abs(got[ok] - expected[ok]) / expected[ok]))

    def ks(column: str) -> float:
        return float(
            stats.ks_2samp(
                source[column].to_numpy(), workload[column].to_numpy(), method="asymp"
            ).statistic
        )

    return Fidelity(
        time_scale=time_scale,
        requests=Pair(source=float(src.size), workload=float(gen.size)),
        mean_rps=Pair(source=_rate(src), workload=_rate(gen)),
        cv=Pair(source=s_stats.cv, workload=g_stats.cv),
        gamma_shape=Pair(source=s_stats.gamma.shape, workload=g_stats.gamma.shape),
        idc_1s=Pair(source=_idc(src, time_scale), workload=_idc(gen, 1.0)),
        idc_60s=Pair(source=_idc(src, 60.0 * time_scale), workload=_idc(gen, 60.0)),
        window_s=window_s,
        window_rate_error=error,
        ks_interarrival=float(
            stats.ks_2samp(_normalised_gaps(src), _normalised_gaps(gen), method="asymp").statistic
        ),
        ks_input_tokens=ks("input_tokens"),
        ks_output_tokens=ks("output_tokens"),
    )
