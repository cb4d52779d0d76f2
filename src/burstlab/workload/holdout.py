"""Out-of-sample fidelity: fit on the first part of a trace, judge on the rest.

A model that reproduces the trace it was fitted on may only be copying it. Here
the model is fitted on the first ``1 - fraction`` of the trace's span, and
traffic is generated for the length of the held-out part at the *fitted* mean
rate (the model is not told the held-out rate); both arrival models (the
multi-scale process and the paper's per-window Gamma) are drawn ``paths`` times
with consecutive seeds, and each statistic is averaged over the paths (with its
range), since one path of a bursty process is itself a noisy sample. The IDC
curve over 16 bin widths (the mean over the paths) and the gap quantiles of one
path per model are kept for the report's figures.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from burstlab.analyze.burstiness import count_moments
from burstlab.analyze.gaps import on_grid
from burstlab.workload.fidelity import Fidelity, combine, fidelity, reference
from burstlab.workload.model import ArrivalKind, WorkloadModel, fit

ARRIVAL_KINDS: tuple[ArrivalKind, ...] = ("multiscale", "window-gamma")


class Holdout(BaseModel):
    """The out-of-sample check: spans in seconds, one combined :class:`Fidelity` per
    arrival model, keyed by its name."""

    model_config = ConfigDict(extra="forbid")

    kind: str = "holdout"
    fraction: float = Field(gt=0, lt=1)
    fit_span_s: float
    held_out_span_s: float
    fit_requests: int
    held_out_requests: int
    paths: int
    seed: int
    models: dict[str, Fidelity]
    verdict: str
    curve_widths_s: list[float] = []
    curves: dict[str, list[float | None]] = {}
    gap_quantiles: dict[str, list[float]] = {}


def _curve(arrival: np.ndarray, widths: np.ndarray, tick: float) -> list[float | None]:
    """IDC at each width (None with fewer than 10 bins), on the grid."""
    out: list[float | None] = []
    for w in widths:
        value, bins = count_moments(arrival, float(w), tick)
        out.append(float(value) if bins >= 10 and np.isfinite(value) else None)
    return out


def _gap_quantiles(arrival: np.ndarray) -> list[float]:
    gaps = np.diff(arrival)
    if gaps.size == 0 or gaps.mean() <= 0:
        return []
    values: list[float] = np.quantile(gaps / gaps.mean(), np.linspace(0, 1, 201)).tolist()
    return values


def split(table: pl.DataFrame, fraction: float) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The first ``1 - fraction`` of the span and the rest (its clock restarted at 0)."""
    start = float(table["arrival_s"].min())  # type: ignore[arg-type]
    end = float(table["arrival_s"].max())  # type: ignore[arg-type]
    cut = start + (end - start) * (1 - fraction)
    first = table.filter(pl.col("arrival_s") < cut)
    rest = table.filter(pl.col("arrival_s") >= cut).with_columns(pl.col("arrival_s") - cut)
    return first, rest


def holdout(
    table: pl.DataFrame,
    *,
    fraction: float = 0.5,
    window_s: float = 1200.0,
    paths: int = 8,
    seed: int = 0,
    source: str = "table",
) -> tuple[WorkloadModel, Holdout]:
    """Fit on the first part, generate the held-out length, compare (see the module)."""
    if not 0 < fraction < 1:
        raise ValueError(f"the held-out fraction must lie in (0, 1), got {fraction}")
    first, rest = split(table, fraction)
    if first.height < 3 or rest.height < 3:
        raise ValueError(
            f"the split leaves {first.height} requests to fit and {rest.height} to judge "
            "(needs at least 3 each)"
        )
    model = fit(first, window_s=window_s, source=source)
    ref = reference(rest)
    duration = float(rest["arrival_s"].max())  # type: ignore[arg-type]
    tick = ref.resolution_s or 0.0
    held = rest["arrival_s"].to_numpy()
    widths = np.geomspace(max(tick, 0.1 * duration / max(rest.height, 1), 1e-3), duration / 10, 16)
    if tick > 0:
        widths = np.unique(np.maximum(np.rint(widths / tick), 1) * tick)
    fitted_part = first["arrival_s"].to_numpy()
    curves: dict[str, list[float | None]] = {
        "held out": _curve(held, widths, tick),
        "fitted part": _curve(fitted_part - fitted_part[0], widths, tick),
    }
    quantiles = {"held out": _gap_quantiles(held)}
    models = {}
    for kind in ARRIVAL_KINDS:
        runs, path_curves = [], []
        for i in range(paths):
            work = model.sample(duration_s=duration, seed=seed + i, arrivals=kind)
            runs.append(fidelity(ref, work))
            times = work["arrival_s"].to_numpy()
            times = on_grid(times, tick)
            path_curves.append(_curve(times, widths, tick))
            if i == 0:
                quantiles[kind] = _gap_quantiles(times)
        # new paths share no windows with the held-out part: a per-window error means nothing
        models[kind] = combine(runs).model_copy(update={"window_rate_error": None})
        stacked = np.array([[np.nan if v is None else v for v in c] for c in path_curves])
        seen = np.isfinite(stacked).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.nansum(stacked, axis=0) / seen
        curves[kind] = [float(v) if np.isfinite(v) else None for v in means]
    arrival = first["arrival_s"].to_numpy()
    return model, Holdout(
        fraction=fraction,
        fit_span_s=float(arrival[-1] - arrival[0]),
        held_out_span_s=duration,
        fit_requests=first.height,
        held_out_requests=rest.height,
        paths=paths,
        seed=seed,
        models=models,
        verdict=f"multiscale {models['multiscale'].verdict}",
        curve_widths_s=widths.tolist(),
        curves=curves,
        gap_quantiles=quantiles,
    )
