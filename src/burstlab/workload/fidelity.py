"""How faithful a workload is to its source: rate, burstiness at four scales, gaps, lengths.

The source is summarised once as a :class:`Reference` (from a trace, or stored in
a fitted model), so replayed and modelled workloads are judged the same way. A
workload usually runs at another speed than its source: ``time_scale`` says how
many times faster. Every statistic is taken in *trace time* (the workload's times
multiplied by ``time_scale``) and on the source's timestamp grid (the workload's
times floored to the source's tick), so a perfect copy at any speed reads as one,
and a model that emits exact times is judged on what the source's logger would
have recorded:

- mean rate, CV of gaps, and the index of dispersion of counts in 1, 10, 60 and
  600 s bins (bins aligned with the grid; a scale below the tick, with fewer than
  10 bins or too few requests per bin is not judged and says why);
- KS distance of the gaps (over their mean; on a grid, in ticks, compared at
  mid-tick points so that equal atoms compare equal), and of the per-minute rate
  (requests per minute, compared at mid-count points);
- for replays, the median relative error of per-window rates;
- KS distances of request and response lengths;
- a one-line verdict: CV and every judged IDC within 20% (or within twice the
  source's own sampling error, ``2 sqrt(2 / bins)``, for an IDC on few bins),
  gap KS at most 0.05.

KS distances are taken against the source's quantile function (1,001 points, so
0.001 resolution).
"""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from burstlab.analyze.burstiness import dispersion, window_rates
from burstlab.analyze.gaps import Resolution, detect_resolution, on_grid, resolution_label

QUANTILE_POINTS = 1001
#: A statistic within this relative error of the source's counts as faithful.
TOLERANCE = 0.2
#: The largest gap KS distance that counts as faithful.
GAP_KS = 0.05


class Reference(BaseModel):
    """What a workload is compared against: the source's statistics (times in trace time).

    ``gap_quantiles`` are of gaps over their mean, or in ticks when
    ``resolution_s`` is set; ``minute_quantiles`` of requests per complete minute
    (empty when the source is shorter than two minutes).
    """

    model_config = ConfigDict(extra="forbid")

    requests: int
    mean_rps: float
    span_s: float
    resolution_s: float | None
    cv: float
    idc: dict[str, float | None]
    idc_notes: dict[str, str]
    idc_bins: dict[str, int] = {}
    window_s: float
    window_rate_rps: list[float]
    gap_quantiles: list[float]
    minute_quantiles: list[float]
    input_quantiles: list[float]
    output_quantiles: list[float]


class Stat(BaseModel):
    """One statistic of the source and of the workload (``lo``/``hi``: the range over
    several generated paths, when there were several); ``note`` says why a side is
    not judged; ``tolerance`` is the relative error still counted as faithful: 20%,
    or twice the source's own sampling error where that is larger (an IDC on few
    bins)."""

    model_config = ConfigDict(extra="forbid")

    source: float | None
    workload: float | None
    lo: float | None = None
    hi: float | None = None
    note: str | None = None
    tolerance: float = TOLERANCE

    @property
    def error(self) -> float | None:
        """Relative error of the workload against the source."""
        if self.source is None or self.workload is None or self.source == 0:
            return None
        return self.workload / self.source - 1.0


class Fidelity(BaseModel):
    """Workload against source, in trace time and on the source's grid (see the module)."""

    model_config = ConfigDict(extra="forbid")

    time_scale: float
    resolution: str
    requests: Stat
    mean_rps: Stat
    cv: Stat
    idc: dict[str, Stat]
    ks_gaps: Stat
    ks_minute_rate: Stat
    window_s: float
    window_rate_error: float | None
    ks_input_tokens: float
    ks_output_tokens: float
    verdict: str


def _rate(arrival: np.ndarray) -> float:
    span = float(arrival[-1] - arrival[0]) if arrival.size > 1 else 0.0
    return arrival.size / span if span > 0 else float("nan")


def _gaps(arrival: np.ndarray, tick: float | None) -> np.ndarray:
    """Gaps in ticks on a grid, else over their mean."""
    gaps = np.diff(arrival)
    if tick:
        out: np.ndarray = np.rint(gaps / tick)
        return out
    mean = gaps.mean() if gaps.size else 0.0
    return np.round(gaps / mean, 9) if mean > 0 else gaps


#: Most minutes (or windows) counted one by one; past it an evenly spread subset of
#: minutes stands for all (a workload played far faster than a sparse source spans
#: billions of trace-time minutes), and the per-window rate error is left out.
MAX_BINS = 1_000_000


def _per_minute(arrival: np.ndarray) -> np.ndarray:
    """Requests in each complete minute from the first arrival (an evenly spread subset
    of :data:`MAX_BINS` minutes when there are more), by binary searches."""
    shifted = arrival - arrival[0]
    minutes = int(shifted[-1] // 60.0) if shifted.size else 0
    if minutes < 2:
        return np.zeros(0)
    pick = np.unique(np.linspace(0, minutes - 1, min(minutes, MAX_BINS)).astype(np.int64))
    lo = np.searchsorted(shifted, pick * 60.0, side="left")
    hi = np.searchsorted(shifted, (pick + 1) * 60.0, side="left")
    out: np.ndarray = (hi - lo).astype(np.float64)
    return out


def _quantiles(x: np.ndarray) -> list[float]:
    if x.size == 0:
        return []
    # inverted CDF: every quantile is a value of the data, so atoms (ticks, counts) stay atoms
    grid = np.linspace(0, 1, QUANTILE_POINTS)
    values: list[float] = np.quantile(x, grid, method="inverted_cdf").tolist()
    return values


def reference(table: pl.DataFrame, *, window_s: float = 60.0) -> Reference:
    """Summarise a source table for later comparisons."""
    arrival = table["arrival_s"].to_numpy()
    arrival = arrival - arrival[0]
    res = detect_resolution(arrival)
    arrival = on_grid(arrival, res.tick_s)
    gaps = np.diff(arrival)
    disp = dispersion(arrival, resolution=res)
    return Reference(
        requests=arrival.size,
        mean_rps=_rate(arrival),
        span_s=float(arrival[-1]) if arrival.size else 0.0,
        resolution_s=res.tick_s,
        cv=float(gaps.std() / gaps.mean()) if gaps.size and gaps.mean() > 0 else float("nan"),
        idc=disp.idc,
        idc_notes=disp.notes,
        idc_bins=disp.bins,
        window_s=window_s,
        window_rate_rps=window_rates(arrival, window_s)[1].tolist(),
        gap_quantiles=_quantiles(_gaps(arrival, res.tick_s)),
        minute_quantiles=_quantiles(_per_minute(arrival)),
        input_quantiles=_quantiles(table["input_tokens"].to_numpy()),
        output_quantiles=_quantiles(table["output_tokens"].to_numpy()),
    )


def upgrade_reference(data: object) -> dict[str, object]:
    """A fidelity reference saved by format version 1, in this layout.

    Version 1 kept IDC at 1 s and 60 s only and no grid, per-minute or span
    figures; what it lacks is left empty and reads as not judged.
    """
    old = dict(data) if isinstance(data, dict) else {}
    mean = float(old.get("mean_rps") or 1.0)
    requests = int(old.get("requests") or 0)
    idc = old.get("idc") if isinstance(old.get("idc"), dict) else {}
    return {
        "requests": requests,
        "mean_rps": mean,
        "span_s": requests / mean if mean > 0 else 0.0,
        "resolution_s": None,
        "cv": old.get("cv", float("nan")),
        "idc": idc,
        "idc_notes": {},
        "window_s": old.get("window_s", 60.0),
        "window_rate_rps": old.get("window_rate_rps", []),
        "gap_quantiles": old.get("gap_quantiles", []),
        "minute_quantiles": [],
        "input_quantiles": old.get("input_quantiles", []),
        "output_quantiles": old.get("output_quantiles", []),
    }


def _ks(sample: np.ndarray, quantiles: list[float], points: np.ndarray | None = None) -> float:
    """KS distance between ``sample`` and the distribution with these quantiles.

    Both CDFs are right-continuous steps, evaluated at ``points`` when given
    (mid-points between atoms of a discrete law) and otherwise on the union of
    their values; the reference's resolution is 1 / (points - 1).
    """
    q = np.asarray(quantiles)
    ordered = np.sort(sample)
    grid = points if points is not None else np.unique(np.concatenate([ordered, q]))
    ref = np.clip((np.searchsorted(q, grid, side="right") - 1) / (q.size - 1), 0.0, 1.0)
    emp = np.searchsorted(ordered, grid, side="right") / max(ordered.size, 1)
    return float(np.abs(emp - ref).max())


def _mid_points(sample: np.ndarray, quantiles: list[float]) -> np.ndarray:
    top = max(float(sample.max(initial=0.0)), float(quantiles[-1]))
    return np.arange(int(top) + 2) + 0.5


def _verdict(f: Fidelity) -> str:
    """One line: faithful or not, and why."""
    bad: list[str] = []
    good: list[str] = []
    for name, stat in (("CV", f.cv), *((f"IDC({k})", s) for k, s in f.idc.items())):
        err = stat.error
        if err is None:
            continue
        bar = "" if stat.tolerance <= TOLERANCE + 0.02 else f", bar {stat.tolerance:.0%}: few bins"
        text = f"{name} {stat.workload:.3g} vs {stat.source:.3g} ({err:+.0%}{bar})"
        (bad if abs(err) > stat.tolerance else good).append(text)
    ks = f.ks_gaps.workload
    if ks is not None:
        (bad if ks > GAP_KS else good).append(f"gap KS {ks:.3f}")
    if not bad and not good:
        return "not judged: too little data on either side"
    if bad:
        return f"not faithful: {'; '.join(bad)} (bars: {TOLERANCE:.0%}, gap KS {GAP_KS})"
    return f"faithful: {', '.join(good)}"


def fidelity(ref: Reference, workload: pl.DataFrame, *, time_scale: float = 1.0) -> Fidelity:
    """Compare ``workload`` (its own clock) with the source summarised in ``ref``."""
    gen = workload["arrival_s"].to_numpy()
    # back in trace time (to the microsecond, so a replay lands on the source's own instants)
    tick = ref.resolution_s
    in_trace = (gen - gen[0]) * time_scale
    in_trace = on_grid(in_trace, tick) if tick else np.round(in_trace, 6)
    res = Resolution(tick_s=tick, label=resolution_label(tick), on_grid=1.0)
    disp = dispersion(in_trace, resolution=res)
    error = None
    if in_trace[-1] / ref.window_s <= MAX_BINS:
        got = window_rates(in_trace, ref.window_s)[1]
        expected = np.asarray(ref.window_rate_rps)
        n = min(got.size, expected.size)
        ok = expected[:n] > 0
        if ok.any():
            error = float(np.median(np.abs(got[:n][ok] - expected[:n][ok]) / expected[:n][ok]))
    gaps = np.diff(in_trace)
    idc = {
        key: Stat(
            source=ref.idc.get(key),
            workload=value,
            note=ref.idc_notes.get(key) or disp.notes.get(key),
            tolerance=max(TOLERANCE, 2 * (2 / max(ref.idc_bins.get(key, 10**9), 1)) ** 0.5),
        )
        for key, value in disp.idc.items()
    }
    w_gaps = _gaps(in_trace, tick)
    minutes = _per_minute(in_trace)
    ks_gaps = Stat(source=0.0, workload=None, note="the source keeps no gap quantiles")
    if ref.gap_quantiles and w_gaps.size:
        points = _mid_points(w_gaps, ref.gap_quantiles) if tick else None
        ks_gaps = Stat(source=0.0, workload=_ks(w_gaps, ref.gap_quantiles, points))
    ks_minute = Stat(source=0.0, workload=None, note="shorter than two minutes")
    if ref.minute_quantiles and minutes.size:
        value = _ks(minutes, ref.minute_quantiles, _mid_points(minutes, ref.minute_quantiles))
        ks_minute = Stat(source=0.0, workload=value)
    result = Fidelity(
        time_scale=time_scale,
        resolution=res.label,
        requests=Stat(source=float(ref.requests), workload=float(gen.size)),
        mean_rps=Stat(source=ref.mean_rps, workload=_rate(in_trace)),
        cv=Stat(
            source=ref.cv,
            workload=float(gaps.std() / gaps.mean()) if gaps.size and gaps.mean() > 0 else None,
        ),
        idc=idc,
        ks_gaps=ks_gaps,
        ks_minute_rate=ks_minute,
        window_s=ref.window_s,
        window_rate_error=error,
        ks_input_tokens=_ks(workload["input_tokens"].to_numpy(), ref.input_quantiles),
        ks_output_tokens=_ks(workload["output_tokens"].to_numpy(), ref.output_quantiles),
        verdict="",
    )
    return result.model_copy(update={"verdict": _verdict(result)})


def combine(runs: list[Fidelity]) -> Fidelity:
    """Several generated paths against one source: each statistic's mean, with its range."""
    first = runs[0]

    def merged(stats: list[Stat]) -> Stat:
        values = [s.workload for s in stats if s.workload is not None]
        if not values:
            return stats[0]
        return stats[0].model_copy(
            update={"workload": float(np.mean(values)), "lo": min(values), "hi": max(values)}
        )

    errors = [r.window_rate_error for r in runs if r.window_rate_error is not None]
    out = first.model_copy(
        update={
            "requests": merged([r.requests for r in runs]),
            "mean_rps": merged([r.mean_rps for r in runs]),
            "cv": merged([r.cv for r in runs]),
            "idc": {k: merged([r.idc[k] for r in runs]) for k in first.idc},
            "ks_gaps": merged([r.ks_gaps for r in runs]),
            "ks_minute_rate": merged([r.ks_minute_rate for r in runs]),
            "window_rate_error": float(np.mean(errors)) if errors else None,
            "ks_input_tokens": float(np.mean([r.ks_input_tokens for r in runs])),
            "ks_output_tokens": float(np.mean([r.ks_output_tokens for r in runs])),
        }
    )
    return out.model_copy(update={"verdict": _verdict(out)})
