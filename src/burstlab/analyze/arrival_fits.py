"""The BurstGPT paper's remaining arrival analyses: goodness of fit, per class, per time of day.

All three are about inter-arrival gaps on the trace's timestamp grid (see
:mod:`burstlab.analyze.gaps`: a gap logged as ``k`` ticks lies between ``k - 1``
and ``k + 1`` ticks).

* :func:`gap_check` compares the logged gaps with the whole-trace Gamma and Weibull
  fits *as the logger would have recorded them*. On a grid, a family's share of
  gaps logged as at most ``k`` ticks is ``G(k) = F1(k + 1) - F1(k)`` (in ticks,
  ``F1`` the integrated CDF; the sum of the censored ``P(j)``, ``j <= k``, which
  telescopes). The KS distance is the largest difference between the empirical
  and this fitted CDF over every whole number of ticks: both are steps at whole
  ticks, so each logged value and the tick before the next one decide it exactly.
  On a continuous trace it is the usual KS distance at every gap. A bounded
  histogram with both fits' shares per bin is kept for the report.
* :func:`class_arrivals` fits each model x log type's own arrivals (the paper's
  alpha/beta per model and log type).
* :func:`workday_slots` averages the per-20-minute Gamma fits over work days for
  each 20-minute slot of the wall-clock day: the table BurstGPT-Perf replays.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict
from scipy import special

from burstlab.analyze.burstiness import WindowSeries
from burstlab.analyze.gaps import (
    Family,
    FamilyFit,
    GapFit,
    Resolution,
    censored_pmf,
    fit_gaps,
    fit_windows,
)
from burstlab.analyze.periodicity import DAY_S

#: The histogram has one bin per tick when this quantile of the logged gaps ...
TICK_QUANTILE = 0.995
#: ... is at most this many ticks; otherwise log-spaced bins.
MAX_TICK_BINS = 60
#: Log-spaced bins between the 0.1st and 99.9th percentiles of the positive gaps.
LOG_BINS = 40
#: A model x log type is fitted from this many requests on.
MIN_CLASS_REQUESTS = 50
#: Slots of the day (s): BurstGPT's 20-minute windows.
SLOT_S = 1200.0
SLOTS_PER_DAY = int(DAY_S // SLOT_S)
#: Counting the logged gaps per tick with a dense array up to this many ticks.
_DENSE_TICKS = 4_000_000


# --- fitted CDFs as logged ------------------------------------------------------------------


def _integrated_cdf(family: Family, shape: float, scale: float, x: np.ndarray) -> np.ndarray:
    """``F1(x) = int_0^x F(t) dt`` in the units of ``scale``; 0 for ``x <= 0``."""
    x = np.maximum(np.asarray(x, dtype=np.float64), 0.0)
    if family == "gamma":
        y = x / scale
        out: np.ndarray = x * special.gammainc(shape, y) - shape * scale * special.gammainc(
            shape + 1, y
        )
        return out
    z = (x / scale) ** shape
    out = x - scale * special.gamma(1 + 1 / shape) * special.gammainc(1 / shape, z)
    return out


def logged_cdf(family: Family, shape: float, scale_ticks: float, k: np.ndarray) -> np.ndarray:
    """Share of gaps logged as at most ``k`` ticks (``k`` whole, may be -1) under a fit
    with scale ``scale_ticks`` in ticks: ``F1(k + 1) - F1(k)``, the CDF averaged over
    ``[k, k + 1]``."""
    k = np.asarray(k, dtype=np.float64)
    out = _integrated_cdf(family, shape, scale_ticks, k + 1) - _integrated_cdf(
        family, shape, scale_ticks, k
    )
    clipped: np.ndarray = np.clip(out, 0.0, 1.0)
    return clipped


def continuous_cdf(family: Family, shape: float, scale: float, x: np.ndarray) -> np.ndarray:
    """The family's CDF at ``x`` (units of ``scale``)."""
    y = np.maximum(np.asarray(x, dtype=np.float64), 0.0) / scale
    out: np.ndarray = special.gammainc(shape, y) if family == "gamma" else -np.expm1(-(y**shape))
    return out


# --- goodness of fit of the whole-trace fits ------------------------------------------------


class GapHistogram(BaseModel):
    """Logged gaps in bins ``[lo_s[i], hi_s[i])`` (seconds): the share of gaps in each bin
    and the share each fitted family gives it as logged (null: family not identifiable).

    ``kind`` ``ticks``: one bin per whole number of ticks ``k = 0, 1, ...`` (``lo_s`` is
    ``k * tick_s``) up to the 99.5th percentile; ``log``: log-spaced bins up to the 99.9th
    percentile (a continuous trace, or gaps of many ticks; on a grid the first bin holds
    the zero gaps). ``cdf_*`` are shares of gaps below each bin's upper end: the
    empirical against the fitted CDF, for a P-P plot.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["ticks", "log"]
    tick_s: float | None
    lo_s: list[float]
    hi_s: list[float]
    empirical: list[float]
    gamma: list[float] | None
    weibull: list[float] | None
    cdf_empirical: list[float]
    cdf_gamma: list[float] | None
    cdf_weibull: list[float] | None


class GapCheck(BaseModel):
    """How well the whole-trace fits (``burstiness.gaps``) describe the logged gaps.

    ``ks_gamma``/``ks_weibull``: Kolmogorov-Smirnov distance between the empirical CDF
    of the logged gaps and the family's CDF as logged (on a grid: over every whole
    number of ticks; continuous: at every gap); null where the family is not
    identifiable, with the reason in ``note``.
    """

    model_config = ConfigDict(extra="forbid")

    ks_gamma: float | None
    ks_weibull: float | None
    histogram: GapHistogram
    note: str | None


class _Logged:
    """The logged gaps, compressed: sorted distinct values (ticks on a grid, seconds
    otherwise) with the share of gaps at or below each."""

    __slots__ = ("cum", "n", "values")

    def __init__(self, gaps: np.ndarray, tick: float | None) -> None:
        self.n = gaps.size
        if tick is None:
            self.values = np.sort(gaps)
            self.cum = np.arange(1, self.n + 1) / self.n
            return
        ticks = np.maximum(np.rint(gaps / tick), 0).astype(np.int64)
        if ticks.size and ticks.max() < _DENSE_TICKS:
            per = np.bincount(ticks)
            values = np.flatnonzero(per)
            counts = per[values]
        else:
            values, counts = np.unique(ticks, return_counts=True)
        self.values = values.astype(np.float64)
        self.cum = np.cumsum(counts) / self.n

    def below(self, x: np.ndarray) -> np.ndarray:
        """Share of gaps strictly below ``x``."""
        i = np.searchsorted(self.values, x, side="left")
        out: np.ndarray = np.where(i > 0, self.cum[np.maximum(i - 1, 0)], 0.0)
        return out

    def quantile(self, q: float) -> float:
        return float(self.values[min(int(np.searchsorted(self.cum, q)), self.values.size - 1)])


def _ks(logged: _Logged, family: Family, fit: FamilyFit, tick: float | None) -> float:
    if tick is None:
        fitted = continuous_cdf(family, fit.shape, fit.scale, logged.values)
        prev = logged.cum - 1.0 / logged.n
        return float(max((logged.cum - fitted).max(), (fitted - prev).max()))
    v, scale = logged.values, fit.scale / tick
    at = logged_cdf(family, fit.shape, scale, v)
    before_next = logged_cdf(family, fit.shape, scale, v - 1)  # just below each value
    prev = np.append(0.0, logged.cum[:-1])
    return float(max(np.abs(logged.cum - at).max(), np.abs(prev - before_next).max()))


def gap_check(arrival_s: np.ndarray, fits: GapFit) -> GapCheck:
    """KS distances and a bounded histogram of the logged gaps of sorted ``arrival_s``
    against ``fits`` (the fits of these same arrivals)."""
    tick = fits.resolution.tick_s
    logged = _Logged(np.diff(np.asarray(arrival_s, dtype=np.float64)), tick)
    families: dict[Family, FamilyFit] = {"gamma": fits.gamma, "weibull": fits.weibull}
    usable = {f: fit for f, fit in families.items() if fit.identifiable}
    ks = {f: _ks(logged, f, fit, tick) for f, fit in usable.items()}
    notes = [
        f"{f.capitalize()} not drawn: {fit.note}" for f, fit in families.items() if f not in usable
    ]
    return GapCheck(
        ks_gamma=ks.get("gamma"),
        ks_weibull=ks.get("weibull"),
        histogram=_histogram(logged, tick, usable),
        note="; ".join(notes) or None,
    )


def _histogram(
    logged: _Logged, tick: float | None, usable: dict[Family, FamilyFit]
) -> GapHistogram:
    unit = tick or 1.0
    top = logged.quantile(TICK_QUANTILE)
    if tick is not None and top <= MAX_TICK_BINS:
        k = np.arange(max(int(top), 4) + 1, dtype=np.float64)
        edges = np.append(k, k[-1] + 1)
        shares = {f: censored_pmf(f, fit.shape, fit.scale / tick, k) for f, fit in usable.items()}
        cdfs = {f: logged_cdf(f, fit.shape, fit.scale / tick, k) for f, fit in usable.items()}
        kind: Literal["ticks", "log"] = "ticks"
    else:
        positive = logged.values[logged.values > 0]
        weights = np.diff(np.append(0.0, logged.cum))[logged.values > 0]
        cum = np.cumsum(weights) / max(weights.sum(), 1e-300)
        if positive.size:
            lo = float(positive[min(int(np.searchsorted(cum, 0.001)), positive.size - 1)])
            hi = float(positive[min(int(np.searchsorted(cum, 0.999)), positive.size - 1)])
            hi = max(hi, lo * 10)
        else:  # every gap is zero: one instant
            lo, hi = unit, unit * 10
        edges = np.geomspace(lo, hi, LOG_BINS + 1)
        if tick is not None:  # whole ticks, the zero gaps in a bin of their own
            edges = np.unique(np.concatenate([[0.0, 1.0], np.rint(edges)]))
        cdfs = {}
        for f, fit in usable.items():
            if tick is None:
                cdfs[f] = continuous_cdf(f, fit.shape, fit.scale, edges)
            else:  # share logged below e ticks = share logged at most e - 1
                cdfs[f] = logged_cdf(f, fit.shape, fit.scale / tick, edges - 1)
        shares = {f: np.diff(c) for f, c in cdfs.items()}
        cdfs = {f: c[1:] for f, c in cdfs.items()}
        kind = "log"
    below = logged.below(edges)
    return GapHistogram(
        kind=kind,
        tick_s=tick,
        lo_s=(edges[:-1] * unit).tolist(),
        hi_s=(edges[1:] * unit).tolist(),
        empirical=np.diff(below).tolist(),
        gamma=shares["gamma"].tolist() if "gamma" in shares else None,
        weibull=shares["weibull"].tolist() if "weibull" in shares else None,
        cdf_empirical=below[1:].tolist(),
        cdf_gamma=cdfs["gamma"].tolist() if "gamma" in cdfs else None,
        cdf_weibull=cdfs["weibull"].tolist() if "weibull" in cdfs else None,
    )


# --- per model x log type -------------------------------------------------------------------


class ClassArrivals(BaseModel):
    """Gamma (alpha = shape, beta = scale in s) and Weibull fits of one model x log type's
    own arrivals, on the table's timestamp grid; ``fit`` null (and ``note`` why) below
    :data:`MIN_CLASS_REQUESTS` requests. ``mean_rps`` is requests over the class's span."""

    model_config = ConfigDict(extra="forbid")

    model: str | None
    log_type: str | None
    requests: int
    mean_rps: float | None
    fit: GapFit | None
    note: str | None


def class_arrivals(
    table: pl.DataFrame, whole: GapFit, *, min_requests: int = MIN_CLASS_REQUESTS
) -> list[ClassArrivals]:
    """Fits per model x log type (largest first) of sorted ``table``; ``whole`` is the fit
    of the whole table, reused when one class holds every row."""
    keys = (
        table.group_by("model", "log_type")
        .agg(n=pl.len())
        .sort(["n", "model", "log_type"], descending=[True, False, False], nulls_last=True)
    )
    out = []
    for model, log_type, n in keys.iter_rows():
        arrival = table.filter(
            pl.col("model").eq_missing(model) & pl.col("log_type").eq_missing(log_type)
        )["arrival_s"].to_numpy()
        span = float(arrival[-1] - arrival[0])
        fit, note = None, None
        if n < min_requests:
            note = f"{n} requests: fewer than {min_requests} to fit"
        elif n == table.height:
            fit = whole
        else:
            fit = fit_gaps(arrival, whole.resolution)
        out.append(
            ClassArrivals(
                model=None if model is None else str(model),
                log_type=None if log_type is None else str(log_type),
                requests=int(n),
                mean_rps=n / span if span > 0 else None,
                fit=fit,
                note=note,
            )
        )
    return out


# --- work-day alpha/beta per 20 minutes of day ----------------------------------------------


class DaySlot(BaseModel):
    """One 20-minute slot of the wall-clock day: the mean (and standard deviation, null
    below two) of the per-window censored Gamma ``shape`` (alpha) and ``scale`` (beta, s)
    over the ``windows`` days whose window in this slot had an identifiable fit, out of
    ``observed`` days the table covers there; ``rate_rps`` is requests over seconds
    covered in those ``observed`` windows."""

    model_config = ConfigDict(extra="forbid")

    start: str
    start_s: float
    shape: float | None
    scale: float | None
    shape_sd: float | None
    scale_sd: float | None
    windows: int
    observed: int
    rate_rps: float | None


class WorkdaySlots(BaseModel):
    """Gamma alpha/beta averaged over work days for each of the 72 slots of 20 minutes,
    aligned to the wall clock (slot 0 starts at midnight).

    ``days`` is ``Mon-Fri`` when the weekday is known and ``all days`` when it is not;
    ``slots`` is null (``note`` says why) when the table spans under a day or has no
    work day.
    """

    model_config = ConfigDict(extra="forbid")

    slot_s: float
    days: Literal["Mon-Fri", "all days"] | None
    slots: list[DaySlot] | None
    note: str | None


def _aligned_fits(
    arrival: np.ndarray,
    *,
    shift: float,
    g0: int,
    count: int,
    resolution: Resolution,
    windows: WindowSeries | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Gamma shape and scale of wall-clock windows ``g0 .. g0 + count - 1``: taken from
    ``windows`` when its windows fall within 5 minutes of 20-minute marks (a trace whose
    clock starts a little after midnight, as BurstGPT's does; each window then counts
    for the slot it mostly covers), else fitted."""
    steps = shift / SLOT_S
    near = abs(steps - round(steps)) * SLOT_S <= 300.0
    if windows is not None and windows.window_s == SLOT_S and near:
        first = g0 - round(steps)
        if first >= 0:  # windows past the burstiness series' end stay unfitted (NaN)
            out = np.full((2, count), np.nan)
            for row, values in enumerate((windows.shape, windows.scale)):
                got = [np.nan if v is None else v for v in values[first : first + count]]
                out[row, : len(got)] = got
            return out[0], out[1]
    fits = fit_windows(arrival + shift - g0 * SLOT_S, SLOT_S, resolution=resolution)
    shape = np.full(count, np.nan)
    scale = np.full(count, np.nan)
    m = min(count, fits.shape.size)
    shape[:m], scale[:m] = fits.shape[:m], fits.scale[:m]
    return shape, scale


def workday_slots(
    arrival_s: np.ndarray,
    *,
    day_offset_s: float = 0.0,
    weekday0: int | None = None,
    resolution: Resolution,
    windows: WindowSeries | None = None,
) -> WorkdaySlots:
    """Work-day mean alpha/beta per 20 minutes of day of sorted ``arrival_s``.

    ``day_offset_s``/``weekday0`` place ``arrival_s = 0`` on the wall clock (see
    :mod:`burstlab.analyze.calendar`); ``windows`` (the burstiness windows, from
    ``arrival_s = 0``) are reused when they fall on 20-minute marks of the clock.
    """
    arrival = np.asarray(arrival_s, dtype=np.float64)
    days: Literal["Mon-Fri", "all days"] = "all days" if weekday0 is None else "Mon-Fri"
    span = float(arrival[-1] - arrival[0]) if arrival.size else 0.0
    if span < DAY_S:
        return WorkdaySlots(
            slot_s=SLOT_S,
            days=None,
            slots=None,
            note=f"needs at least a day of arrivals (the table spans {span / 3600:.1f} h)",
        )
    wall = arrival + day_offset_s
    g0 = int(np.floor(wall[0] / SLOT_S))
    index = np.floor(wall / SLOT_S).astype(np.int64) - g0
    count = int(index[-1]) + 1
    g = np.arange(count) + g0
    start = g * SLOT_S
    covered = np.clip(np.minimum(start + SLOT_S, wall[-1]) - np.maximum(start, wall[0]), 0, None)
    requests = np.bincount(index, minlength=count).astype(np.float64)
    shape, scale = _aligned_fits(
        arrival, shift=day_offset_s, g0=g0, count=count, resolution=resolution, windows=windows
    )
    slot = g % SLOTS_PER_DAY
    work = np.ones(count, dtype=bool)
    if weekday0 is not None:
        work = (weekday0 + g // SLOTS_PER_DAY) % 7 < 5
    seen = work & (covered > 0)
    notes = [] if weekday0 is not None else ["weekdays unknown (pass --origin): all days averaged"]
    if not seen.any():
        return WorkdaySlots(slot_s=SLOT_S, days=days, slots=None, note="no work day in the table")
    fitted = seen & np.isfinite(shape)

    def per_slot(values: np.ndarray, where: np.ndarray) -> np.ndarray:
        return np.bincount(slot[where], weights=values[where], minlength=SLOTS_PER_DAY)

    n = per_slot(np.ones(count), fitted)
    observed = per_slot(np.ones(count), seen)
    rate_num, rate_den = per_slot(requests, seen), per_slot(covered, seen)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = {k: per_slot(v, fitted) / n for k, v in (("shape", shape), ("scale", scale))}
        sd = {
            k: np.sqrt(np.maximum(per_slot((v - mean[k][slot]) ** 2, fitted), 0) / (n - 1))
            for k, v in (("shape", shape), ("scale", scale))
        }
    empty = int((n == 0).sum())
    if empty:
        notes.append(f"{empty} of {SLOTS_PER_DAY} slots have no identifiable window fit")

    def num(v: float, ok: bool) -> float | None:
        return float(v) if ok and np.isfinite(v) else None

    slots = [
        DaySlot(
            start=f"{int(s * SLOT_S // 3600):02d}:{int(s * SLOT_S % 3600 // 60):02d}",
            start_s=s * SLOT_S,
            shape=num(mean["shape"][s], n[s] > 0),
            scale=num(mean["scale"][s], n[s] > 0),
            shape_sd=num(sd["shape"][s], n[s] > 1),
            scale_sd=num(sd["scale"][s], n[s] > 1),
            windows=int(n[s]),
            observed=int(observed[s]),
            rate_rps=num(rate_num[s] / max(rate_den[s], 1e-300), rate_den[s] > 0),
        )
        for s in range(SLOTS_PER_DAY)
    ]
    return WorkdaySlots(slot_s=SLOT_S, days=days, slots=slots, note="; ".join(notes) or None)
