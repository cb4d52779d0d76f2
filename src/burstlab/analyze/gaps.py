"""Inter-arrival fits that respect the timestamp grid: resolution, censored Gamma and Weibull.

Real traces are quantised: BurstGPT logs whole seconds, Mooncake puts requests on a
~3 s grid, Azure keeps 100 ns. Fitting a continuous density to the logged gaps is
wrong there (dropping the zero gaps turns Gamma(0.3) traffic into shape ~1.3), so
the fits here use the likelihood of what the logger actually recorded.

**The likelihood.** Let the grid have tick ``d`` and a request at true time ``t`` be
logged as ``d * floor(t / d)`` (rounding is the same up to a shift). A true gap
``x`` between requests at ``t`` and ``t + x`` is logged as ``k`` ticks. Write
``x = (m + f) d`` with integer ``m`` and ``0 <= f < 1``; with the phase ``u`` of
``t`` inside its tick uniform on ``[0, 1)``, ``floor(u + m + f) - floor(u)`` is
``m + 1`` with probability ``f`` and ``m`` otherwise. So

    P(k | x) = max(0, 1 - |x / d - k|),

a hat of half-width one tick: a gap logged as ``k`` ticks lies between ``k - 1``
and ``k + 1`` ticks, most likely near ``k``. For a gap density ``f``,

    P(k) = integral of f(x) * hat(x / d - k) dx
         = [F1((k + 1) d) - 2 F1(k d) + F1((k - 1) d)] / d,

the second difference of the integrated CDF ``F1(x) = int_0^x F``, with
``F1(x) = 0`` for ``x <= 0``. In ticks (``d = 1``): ``P(0) = F1(1)`` and
``P(1) = F1(2) - 2 F1(1)``, computed from closed forms (series near 0, so nothing
cancels); for ``2 <= k < 16`` the hat integral is taken by 4+4-point
Gauss-Legendre (the density is smooth away from 0); from 16 ticks on
``P(k) = f(k) (1 + f''(k) / (12 f(k)))``, the hat's second-order effect (its second
moment is 1/6), accurate to 1e-3 there for scales of 2 ticks or more (below, the
mass that far out is negligible). Large gaps are grouped in
log-spaced bins of 2% width (their mean ``k`` and mean ``ln k`` kept, which is
exact for the Gamma log-density and second-order accurate for Weibull), so a fit
costs the same for 10 requests or 10 million. A renewal process's phase is
uniform and independent of the next gap, so each ``P(k)`` is the exact marginal;
consecutive logged gaps share a phase, so the product is a composite likelihood:
consistent, with confidence intervals from the observed information that are
somewhat narrow when many requests share a tick.

**Identifiability.** A grid can swallow the shape: at 50 req/s logged in whole
seconds nearly every gap is 0 ticks. The fit compares the information about the
shape per gap with what exact timestamps would give (the Fisher information of the
continuous family at the estimate); below 5% of it, or with fewer than three
distinct gap values, or with one value holding 95% of the gaps, or at a bound of
the search, the fit is flagged not identifiable and says why in a sentence.

Everything is vectorised over windows: the per-window fits of a 213-day trace run
as one batch of Newton steps in ``(ln shape, ln scale)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy import special

Family = Literal["gamma", "weibull"]

#: Gaps of at least this many ticks use the density at their midpoint.
EXACT_TICKS = 16
#: Relative width of the log-spaced bins that group large gaps (exact for the Gamma
#: log-density, which is linear in k and ln k; a 2e-5 relative error for Weibull).
LOG_BIN = 2e-2
#: Below this share of the exact-timestamp information the shape is not identifiable.
MIN_EFFICIENCY = 0.05
#: Bounds of the shape search (both families).
SHAPE_BOUNDS = (0.01, 1000.0)
_Z95 = 1.959963984540054
_GL_X, _GL_W = np.polynomial.legendre.leggauss(4)
_NODES = (_GL_X + 1.0) / 2.0  # Gauss-Legendre on [0, 1]
_WEIGHTS = _GL_W / 2.0 * (1.0 - _NODES)  # times the hat (1 - u)
_DECIMAL_TICKS = tuple(float(f"{m}e{e}") for e in range(-6, 4) for m in (1, 2, 5))  # 1 us .. 5000 s


class Resolution(BaseModel):
    """The timestamp grid of a trace: ``tick_s`` seconds (None: finer than 1 us).

    ``label`` says it in words (``1 s``, ``1 ms``, ``3 s grid``); ``on_grid`` is the
    share of gaps within 2% of a tick of a whole number of ticks.
    """

    model_config = ConfigDict(extra="forbid")

    tick_s: float | None
    label: str
    on_grid: float


def resolution_label(tick: float | None, decimal: bool = True) -> str:
    """A tick in words: ``1 s``, ``1 ms``, ``3 s grid`` (``decimal`` False), ``continuous``."""
    if tick is None:
        return "continuous (finer than 1 us)"
    for unit, name in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):
        if tick >= unit * 0.999:
            text = f"{tick / unit:.4g} {name}"
            return text if decimal else f"{text} grid"
    return f"{tick:.3g} s"


def _grid_share(gaps: np.ndarray, tick: float) -> float:
    """Share of gaps within 2% of a tick of a whole number of ticks (zero included: two
    requests of one tick may differ by float noise or a little jitter), or 0 when under
    1% of the gaps (and fewer than 20) span a tick or more: a tick no gap reaches is no
    grid."""
    if gaps.size == 0:
        return 0.0
    ratio = gaps / tick
    whole = np.rint(ratio)
    spanning = int((whole >= 1).sum())
    if spanning < min(20, gaps.size) and spanning < 0.01 * gaps.size:
        return 0.0
    return float((np.abs(ratio - whole) <= 0.02).mean())


def sorted_arrivals(arrival_s: np.ndarray, *, non_negative: bool = False) -> np.ndarray:
    """``arrival_s`` as float64, refused in words when it is not sorted (or, with
    ``non_negative``, starts before 0): every statistic here reads gaps in order."""
    arrival = np.asarray(arrival_s, dtype=np.float64)
    if arrival.size > 1 and bool((np.diff(arrival) < 0).any()):
        raise ValueError("arrival times must be sorted (seconds, ascending)")
    if non_negative and arrival.size and arrival[0] < 0:
        raise ValueError("arrival times must not be negative (seconds from the table's start)")
    if arrival.size and not np.isfinite(arrival).all():
        raise ValueError("arrival times must be finite")
    return arrival


def on_grid(arrival_s: np.ndarray, tick_s: float | None) -> np.ndarray:
    """Times floored to the tick, as the source's logger would have written them (a
    millionth of a tick of float noise does not drop a time to the tick below)."""
    if not tick_s:
        return np.asarray(arrival_s, dtype=np.float64)
    out: np.ndarray = np.floor(np.asarray(arrival_s) / tick_s + 1e-6) * tick_s
    return out


def detect_resolution(arrival_s: np.ndarray) -> Resolution:
    """The coarsest tick on which at least 99% of the positive gaps lie.

    Candidates are the decimal ticks 1/2/5 x 10^e from 1 us to 5000 s and one taken
    from the data (the median of the gaps within 1.5x of the smallest gap that is at
    least a tenth of the 90th percentile, to the finest decimal tick that fits), so a
    jittered grid such as Mooncake's ~3 s is found too, and so are grids whose
    same-tick requests differ by float noise or a few milliseconds.
    """
    arrival = np.asarray(arrival_s, dtype=np.float64)
    gaps = np.diff(arrival)
    positive = gaps[gaps > 0]
    if positive.size > 200_000:  # an evenly spread subset decides as well
        positive = positive[:: positive.size // 200_000]
    if positive.size == 0:
        return Resolution(tick_s=None, label=resolution_label(None, True), on_grid=0.0)
    fits = [t for t in _DECIMAL_TICKS if _grid_share(positive, t) >= 0.99]
    finest = fits[0] if fits else None
    best: tuple[float, bool] | None = (fits[-1], True) if fits else None
    clear = positive[positive >= 0.1 * np.quantile(positive, 0.9)]
    small = clear[clear <= 1.5 * clear.min()]
    candidate = float(np.median(small))
    if finest is not None:
        candidate = round(candidate / finest) * finest
    if (
        candidate > 0
        and (best is None or candidate > best[0] * 1.001)
        and _grid_share(positive, candidate) >= 0.99
    ):
        best = (candidate, any(abs(candidate - t) < 1e-9 * t for t in _DECIMAL_TICKS))
    if best is None:
        return Resolution(tick_s=None, label=resolution_label(None, True), on_grid=1.0)
    tick, decimal = best
    return Resolution(
        tick_s=tick, label=resolution_label(tick, decimal), on_grid=_grid_share(positive, tick)
    )


# --- the censored likelihood, in ticks ---------------------------------------------------


@dataclass(slots=True)
class GapData:
    """Logged gaps of many windows, compressed: one entry per (window, value) or log bin.

    ``k`` is the representative gap in ticks (the exact integer below
    :data:`EXACT_TICKS`, else the bin's mean), ``logk`` the mean of ``ln k`` over
    the entry, ``n`` how many gaps it stands for, ``exact`` whether it is a single
    integer value.
    """

    window: np.ndarray
    k: np.ndarray
    logk: np.ndarray
    n: np.ndarray
    exact: np.ndarray
    windows: int
    _parts: _Parts | None = None

    def parts(self) -> _Parts:
        """The parameter-free parts of the likelihood, computed once."""
        if self._parts is None:
            self._parts = _Parts.of(self)
        return self._parts

    @classmethod
    def build(cls, ticks: np.ndarray, window: np.ndarray, windows: int) -> GapData:
        """Compress gaps ``ticks`` (non-negative, in ticks) labelled by ``window``."""
        ticks = np.asarray(ticks, dtype=np.float64)
        window = np.asarray(window, dtype=np.int64)
        small = ticks < EXACT_TICKS
        # small gaps: one entry per (window, whole number of ticks), counted by bincount
        key = window[small] * (EXACT_TICKS + 1) + np.rint(ticks[small]).astype(np.int64)
        counts = np.bincount(key, minlength=windows * (EXACT_TICKS + 1))
        small_keys = np.flatnonzero(counts)
        small_k = (small_keys % (EXACT_TICKS + 1)).astype(np.float64)
        # large gaps: one entry per (window, log bin), with their mean k and mean ln k
        big = ticks[~small]
        logs = np.log(big)
        bin_id = np.floor(logs / LOG_BIN).astype(np.int64)
        lo_bin = int(bin_id.min()) if bin_id.size else 0
        width = int(bin_id.max()) - lo_bin + 1 if bin_id.size else 1
        big_key = window[~small] * width + (bin_id - lo_bin)
        if windows * width <= 4 * big_key.size + 1_000_000:  # dense: bincount, no sort
            n_big = np.bincount(big_key, minlength=windows * width)
            big_keys = np.flatnonzero(n_big)
            n_big = n_big[big_keys]
            k_sum = np.bincount(big_key, weights=big, minlength=windows * width)[big_keys]
            log_sum = np.bincount(big_key, weights=logs, minlength=windows * width)[big_keys]
        else:
            big_keys, inverse, n_big = np.unique(big_key, return_inverse=True, return_counts=True)
            k_sum = np.bincount(inverse, weights=big, minlength=big_keys.size)
            log_sum = np.bincount(inverse, weights=logs, minlength=big_keys.size)
        n_small = counts[small_keys]
        return cls(
            window=np.concatenate([small_keys // (EXACT_TICKS + 1), big_keys // width]),
            k=np.concatenate([small_k, k_sum / n_big]),
            logk=np.concatenate([np.log(np.maximum(small_k, 1e-300)), log_sum / n_big]),
            n=np.concatenate([n_small, n_big]).astype(np.float64),
            exact=np.concatenate([np.ones(small_k.size, bool), np.zeros(big_keys.size, bool)]),
            windows=windows,
        )


def _logsumexp(x: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """ln sum_j w_j exp(x_ij) over the last axis (scipy's is slow on many short rows)."""
    top = x.max(axis=1, keepdims=True)
    e = np.exp(x - top)
    total = (e * w).sum(axis=1) if w is not None else e.sum(axis=1)
    out: np.ndarray = top[:, 0] + np.log(total)
    return out


def _log_f1_gamma(x: float, a: np.ndarray, th: np.ndarray) -> np.ndarray:
    """ln of the integrated CDF at ``x`` ticks: a positive series for y = x/th <= 50."""
    y = x / th
    out = np.empty_like(a)
    series = y <= 50.0
    if series.any():
        aa, yy = a[series][:, None], y[series][:, None]
        top = float(yy.max())
        n = np.arange(np.ceil(top + 10 * np.sqrt(top) + 25))[None, :]
        terms = np.log1p(n) + n * np.log(yy) - special.gammaln(aa + n + 2)
        out[series] = (
            np.log(th[series]) - y[series] + (a[series] + 1) * np.log(y[series])
            + _logsumexp(terms)
        )  # fmt: skip
    far = ~series
    if far.any():
        aa, yy, tt = a[far], y[far], th[far]
        value = x * special.gammainc(aa, yy) - aa * tt * special.gammainc(aa + 1, yy)
        out[far] = np.log(np.maximum(value, 1e-300))
    return out


def _log_f1_weibull(x: float, c: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """ln of the integrated CDF at ``x`` ticks: an alternating series for small z."""
    z = (x / lam) ** c
    out = np.empty_like(c)
    series = z < 0.5
    if series.any():
        cc, zz = c[series][:, None], z[series][:, None]
        n = np.arange(1.0, 16.0)[None, :]
        terms = (-1.0) ** (n + 1) * zz**n / (special.gamma(n + 1) * (n * cc + 1))
        out[series] = np.log(x) + np.log(np.maximum(terms.sum(axis=1), 1e-300))
    far = ~series
    if far.any():
        cc, ll = c[far], lam[far]
        value = x - ll * special.gamma(1 + 1 / cc) * special.gammainc(1 / cc, z[far])
        out[far] = np.log(np.maximum(value, 1e-300))
    return out


@dataclass(frozen=True, slots=True)
class _Parts:
    """What the likelihood needs of a :class:`GapData` that no parameter changes: the
    entries of 0, 1, 2-15 ticks and of binned large gaps, and the quadrature points."""

    zero: np.ndarray
    one: np.ndarray
    mid: np.ndarray
    big: np.ndarray
    mid_x: np.ndarray  # (entries, 8): k +- the Gauss-Legendre nodes
    mid_logx: np.ndarray
    big_x: np.ndarray
    big_logx: np.ndarray

    @classmethod
    def of(cls, data: GapData) -> _Parts:
        exact, k = data.exact, data.k
        mid = np.flatnonzero(exact & (k >= 2))
        km = k[mid][:, None]
        mid_x = np.concatenate([km + _NODES, km - _NODES], axis=1)
        big = np.flatnonzero(~exact)
        return cls(
            zero=np.flatnonzero(exact & (k == 0)),
            one=np.flatnonzero(exact & (k == 1)),
            mid=mid,
            big=big,
            mid_x=mid_x,
            mid_logx=np.log(mid_x),
            big_x=k[big],
            big_logx=data.logk[big],
        )


_MID_WEIGHTS = np.concatenate([_WEIGHTS, _WEIGHTS])[None, :]


#: Below this standard deviation (ticks), P(k) for 2 <= k < 16 comes from the closed
#: form rather than quadrature.
PEAKED_SD = 2.0


def _spread(family: Family, shape: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Standard deviation of the gap law, in ticks."""
    if family == "gamma":
        out: np.ndarray = np.sqrt(shape) * scale
        return out
    g1, g2 = special.gamma(1 + 1 / shape), special.gamma(1 + 2 / shape)
    out = scale * np.sqrt(np.maximum(g2 - g1 * g1, 0.0))
    return out


def _log_second_difference(
    family: Family, k: np.ndarray, shape: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    """ln P(k) = ln [G(k + 1) - 2 G(k) + G(k - 1)] with G the integrated CDF ``F1`` left
    of the mean and the integrated survival ``S1 = F1 - x + mean`` right of it (their
    second differences are equal; each side keeps its digits)."""
    mean = scale * shape if family == "gamma" else scale * special.gamma(1 + 1 / shape)
    right = k > mean

    def g(x: np.ndarray) -> np.ndarray:
        if family == "gamma":
            y = x / scale
            f1 = scale * (y * special.gammainc(shape, y) - shape * special.gammainc(shape + 1, y))
            s1 = scale * (shape * special.gammaincc(shape + 1, y) - y * special.gammaincc(shape, y))
        else:
            z = (x / scale) ** shape
            f1 = x - mean * special.gammainc(1 / shape, z)
            s1 = mean * special.gammaincc(1 / shape, z)
        out: np.ndarray = np.where(right, s1, f1)
        return out

    diff = g(k + 1) - 2 * g(k) + g(k - 1)
    out: np.ndarray = np.log(np.maximum(diff, 1e-300))
    return out


@np.errstate(over="ignore", invalid="ignore", divide="ignore")
def _loglik(family: Family, data: GapData, p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """Log-likelihood per window at (ln shape, ln scale-in-ticks) = (p0, p1) per window.

    Per-window constants of the log-density are computed once per window, not per
    quadrature point.
    """
    parts = data.parts()
    shape_w, scale_w = np.exp(p0), np.exp(p1)
    # gamma: ln f = (a - 1) ln x - x / theta - [a ln theta + lgamma(a)];
    # weibull: ln f = [ln c - c ln lambda] + (c - 1) ln x - (x / lambda)^c
    gamma = family == "gamma"
    const_w = shape_w * p1 + special.gammaln(shape_w) if gamma else p0 - shape_w * p1
    logp = np.empty(data.k.size)
    f1 = _log_f1_gamma if family == "gamma" else _log_f1_weibull

    def at(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        w = data.window[rows]
        return shape_w[w], scale_w[w], p1[w], const_w[w]

    def logf(x: np.ndarray, logx: np.ndarray, rows: np.ndarray) -> np.ndarray:
        a, c, log_c, const = at(rows)
        if x.ndim == 2:
            a, c, log_c, const = a[:, None], c[:, None], log_c[:, None], const[:, None]
        if family == "gamma":
            out: np.ndarray = (a - 1) * logx - x / c - const
        else:
            out = const + (a - 1) * logx - np.exp(a * (logx - log_c))
        return out

    if parts.zero.size:
        a, c, _, _ = at(parts.zero)
        logp[parts.zero] = f1(1.0, a, c)
    if parts.one.size:
        a, c, _, _ = at(parts.one)
        hi, lo = f1(2.0, a, c), f1(1.0, a, c) + np.log(2.0)
        logp[parts.one] = hi + np.log(np.maximum(-np.expm1(np.minimum(lo - hi, 0.0)), 1e-300))
    if parts.mid.size:
        logp[parts.mid] = _logsumexp(logf(parts.mid_x, parts.mid_logx, parts.mid), _MID_WEIGHTS)
        a, c, _, _ = at(parts.mid)
        peaked = _spread(family, a, c) < PEAKED_SD
        if peaked.any():  # quadrature cannot resolve a law narrower than a couple of ticks
            rows = parts.mid[peaked]
            logp[rows] = _log_second_difference(family, data.k[rows], a[peaked], c[peaked])
    if parts.big.size:
        x = parts.big_x
        logp[parts.big] = logf(x, parts.big_logx, parts.big)
        a, c, _, _ = at(parts.big)
        if family == "gamma":
            d1 = (a - 1) / x - 1 / c
            d2 = -(a - 1) / x**2
        else:
            z = (x / c) ** a
            d1 = (a - 1) / x - a * z / x
            d2 = -(a - 1) / x**2 - a * (a - 1) * z / x**2
        # the hat's second moment is 1/6: P(k) = f(k) (1 + (f''/f) / 12) to second order
        logp[parts.big] += np.log(np.clip(1 + (d2 + d1**2) / 12, 0.5, 2.0))
    # a gap the law makes all but impossible costs a large finite penalty, not NaN
    logp = np.nan_to_num(logp, nan=-1e5, neginf=-1e5, posinf=0.0)
    return np.bincount(data.window, weights=data.n * logp, minlength=data.windows)


def _information_continuous(family: Family, shape: np.ndarray) -> np.ndarray:
    """Fisher information per gap about ln(shape) with exact timestamps."""
    if family == "gamma":  # (shape, mean) are orthogonal: I = a^2 (trigamma(a) - 1/a)
        out: np.ndarray = shape**2 * (special.polygamma(1, shape) - 1.0 / shape)
        return out
    return np.full_like(shape, np.pi**2 / 6.0)  # Weibull: var(ln c_hat) = 6/(pi^2 n)


@dataclass(frozen=True, slots=True)
class BatchFit:
    """Fits of many windows (arrays, one entry per window; scale in ticks)."""

    shape: np.ndarray
    scale: np.ndarray
    loglik: np.ndarray
    se_log_shape: np.ndarray
    se_log_scale: np.ndarray
    efficiency: np.ndarray
    at_bound: np.ndarray


def _start(family: Family, mean: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Moment start in ticks: a uniform phase adds 1/6 tick^2 to the gap variance."""
    mean = np.maximum(mean, 1e-3)
    var_x = np.maximum(var - 1.0 / 6.0, 0.05 * mean**2)
    cv = np.sqrt(var_x) / mean
    if family == "gamma":
        shape = np.clip(1.0 / cv**2, 0.05, 100.0)
        return np.log(shape), np.log(mean / shape)
    shape = np.clip(cv**-1.086, 0.1, 20.0)
    return np.log(shape), np.log(mean / special.gamma(1 + 1 / shape))


def _to_natural(family: Family, q0: np.ndarray, q1: np.ndarray) -> np.ndarray:
    """Gamma is searched in (ln a, ln mean), nearly orthogonal; return ln scale."""
    out: np.ndarray = q1 - q0 if family == "gamma" else q1
    return out


def fit_batch(
    family: Family,
    data: GapData,
    mean: np.ndarray,
    var: np.ndarray,
    *,
    iterations: int = 40,
) -> BatchFit:
    """Maximum (composite) likelihood per window by damped Newton steps, all at once.

    ``mean``/``var`` are the logged gaps' moments per window, in ticks (the start).
    """
    q0, q1 = _start(family, mean, var)
    lo, hi = np.log(SHAPE_BOUNDS[0]), np.log(SHAPE_BOUNDS[1])
    h = 1e-3

    def ll(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return _loglik(family, data, a, _to_natural(family, a, b))

    def derivatives(
        a: np.ndarray, b: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        f0 = ll(a, b)
        fa_p, fa_m = ll(a + h, b), ll(a - h, b)
        fb_p, fb_m = ll(a, b + h), ll(a, b - h)
        fpp, fmm = ll(a + h, b + h), ll(a - h, b - h)
        ga, gb = (fa_p - fa_m) / (2 * h), (fb_p - fb_m) / (2 * h)
        haa = (fa_p - 2 * f0 + fa_m) / h**2
        hbb = (fb_p - 2 * f0 + fb_m) / h**2
        hab = (fpp - fa_p - fb_p + 2 * f0 - fa_m - fb_m + fmm) / (2 * h**2)
        return f0, ga, gb, haa, hbb, hab

    active = np.ones(q0.size, dtype=bool)
    for _ in range(iterations):
        if not active.any():
            break
        f0, ga, gb, haa, hbb, hab = derivatives(q0, q1)
        det = haa * hbb - hab**2
        newton = (haa < 0) & (det > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            da = np.where(newton, -(hbb * ga - hab * gb) / det, 0.1 * np.sign(ga))
            db = np.where(newton, -(haa * gb - hab * ga) / det, 0.1 * np.sign(gb))
        da, db = np.nan_to_num(da), np.nan_to_num(db)
        size = np.maximum(np.hypot(da, db), 1e-300)
        scale = np.minimum(1.0, 1.0 / size)
        da, db = np.where(active, da * scale, 0.0), np.where(active, db * scale, 0.0)
        step = np.ones(q0.size)
        improved = np.zeros(q0.size, dtype=bool)
        for _ in range(8):  # backtracking, per window
            na = np.clip(q0 + step * da, lo, hi)
            f1 = ll(na, q1 + step * db)
            ok = (f1 >= f0 - 1e-9) & ~improved
            q0 = np.where(ok, na, q0)
            q1 = np.where(ok, q1 + step * db, q1)
            improved |= ok
            step = np.where(improved, step, step / 4)
            if improved[active].all():
                break
        moved = np.hypot(da, db) * np.where(improved, step, 0.0)
        active &= moved > 1e-5  # in ln(shape): far below any confidence interval
    f0, ga, gb, haa, hbb, hab = derivatives(q0, q1)
    det = haa * hbb - hab**2
    with np.errstate(divide="ignore", invalid="ignore"):
        var_a = np.where((haa < 0) & (det > 0), -hbb / det, np.inf)
        var_b = np.where((haa < 0) & (det > 0), -haa / det, np.inf)
        cov = np.where((haa < 0) & (det > 0), hab / det, 0.0)
    var_scale = var_b + var_a - 2 * cov if family == "gamma" else var_b
    shape = np.exp(q0)
    n = np.bincount(data.window, weights=data.n, minlength=data.windows)
    with np.errstate(divide="ignore", invalid="ignore"):
        efficiency = 1.0 / (n * var_a * _information_continuous(family, shape))
    return BatchFit(
        shape=shape,
        scale=np.exp(_to_natural(family, q0, q1)),
        loglik=f0,
        se_log_shape=np.sqrt(np.maximum(var_a, 0.0)),
        se_log_scale=np.sqrt(np.maximum(var_scale, 0.0)),
        efficiency=np.nan_to_num(efficiency, nan=0.0, posinf=0.0),
        at_bound=(q0 <= lo + 1e-6) | (q0 >= hi - 1e-6),
    )


# --- whole-trace and per-window fits ------------------------------------------------------


class FamilyFit(BaseModel):
    """One family fitted to logged gaps: shape (dimensionless) and scale (s), 95% CIs.

    When ``identifiable`` is false the numbers are the likelihood's best guess
    and ``note`` says why they should not be used.
    """

    model_config = ConfigDict(extra="forbid")

    family: Family
    shape: float
    scale: float
    shape_ci: tuple[float, float]
    scale_ci: tuple[float, float]
    log_likelihood: float
    efficiency: float
    identifiable: bool
    note: str | None


class GapFit(BaseModel):
    """Gamma and Weibull fits of a table's gaps on its timestamp grid.

    ``best`` is the family with the higher likelihood among the identifiable ones
    (both have two parameters), None when neither is.
    """

    model_config = ConfigDict(extra="forbid")

    resolution: Resolution
    gaps: int
    zero_gap_share: float
    gamma: FamilyFit
    weibull: FamilyFit
    best: Family | None
    note: str | None


def _ticks(gaps: np.ndarray, tick: float | None) -> tuple[np.ndarray, float]:
    """Gaps in ticks, and the tick in seconds (a continuous trace gets a tick far
    below its gaps, so the censoring is immaterial there)."""
    if tick is None:
        positive = gaps[gaps > 0]
        tick = float(np.quantile(positive, 0.01)) * 1e-3 if positive.size else 1e-6
        return gaps / tick, tick
    return np.rint(gaps / tick), tick


def _why_not(
    family: Family, fit: BatchFit, i: int, *, distinct: int, modal_share: float, res: Resolution
) -> str | None:
    label = res.label if res.label.endswith("grid") else f"{res.label} grid"
    grid = f"timestamps on a {label}" if res.tick_s else "these gaps"
    if distinct < 3:
        return f"not identifiable: {grid} give fewer than three distinct gap values"
    if modal_share >= 0.95:
        return (
            f"not identifiable: {modal_share:.0%} of the gaps are the same number of ticks "
            f"({grid}); the shape cannot be told apart"
        )
    if fit.at_bound[i]:
        return f"not identifiable: the {family} shape runs to the edge of the search"
    if not fit.efficiency[i] >= MIN_EFFICIENCY:
        return (
            f"not identifiable: with {grid} the gaps keep {fit.efficiency[i]:.1%} of the "
            f"information about the {family} shape that exact timestamps would give"
        )
    return None


def _family_fit(family: Family, fit: BatchFit, i: int, tick: float, why: str | None) -> FamilyFit:
    shape, scale = float(fit.shape[i]), float(fit.scale[i]) * tick
    ss, sc = float(fit.se_log_shape[i]), float(fit.se_log_scale[i])
    with np.errstate(over="ignore"):  # a fit of a few gaps: an unbounded interval is inf
        shape_ci = (shape * np.exp(-_Z95 * ss), shape * np.exp(_Z95 * ss))
        scale_ci = (scale * np.exp(-_Z95 * sc), scale * np.exp(_Z95 * sc))
    return FamilyFit(
        family=family,
        shape=shape,
        scale=scale,
        shape_ci=shape_ci,
        scale_ci=scale_ci,
        log_likelihood=float(fit.loglik[i]),
        efficiency=float(fit.efficiency[i]),
        identifiable=why is None,
        note=why,
    )


def fit_gaps(arrival_s: np.ndarray, resolution: Resolution | None = None) -> GapFit:
    """Gamma and Weibull fits of the gaps of sorted ``arrival_s`` (seconds), on their grid."""
    arrival = sorted_arrivals(arrival_s)
    if arrival.size < 3:
        raise ValueError("fitting gaps needs at least 3 requests")
    res = resolution or detect_resolution(arrival)
    gaps = np.diff(arrival)
    ticks, tick = _ticks(gaps, res.tick_s)
    data = GapData.build(ticks, np.zeros(ticks.size, dtype=np.int64), 1)
    mean, var = np.array([ticks.mean()]), np.array([ticks.var()])
    _, counts = np.unique(np.rint(ticks) if res.tick_s else ticks, return_counts=True)
    distinct, modal = counts.size, float(counts.max() / ticks.size)
    fits = {}
    for family in ("gamma", "weibull"):
        batch = fit_batch(family, data, mean, var)
        why = _why_not(family, batch, 0, distinct=distinct, modal_share=modal, res=res)
        fits[family] = _family_fit(family, batch, 0, tick, why)
    usable = [f for f in fits.values() if f.identifiable]
    best = max(usable, key=lambda f: f.log_likelihood).family if usable else None
    return GapFit(
        resolution=res,
        gaps=int(gaps.size),
        zero_gap_share=float((gaps == 0).mean()),
        gamma=fits["gamma"],
        weibull=fits["weibull"],
        best=best,
        note=None if usable else fits["gamma"].note,
    )


@dataclass(frozen=True, slots=True)
class WindowFits:
    """Per-window fits (arrays over windows; scale in seconds, NaN where unusable)."""

    shape: np.ndarray
    scale: np.ndarray
    shape_lo: np.ndarray
    shape_hi: np.ndarray
    loglik: np.ndarray
    identifiable: np.ndarray


def fit_windows(
    arrival_s: np.ndarray,
    window_s: float,
    *,
    family: Family = "gamma",
    resolution: Resolution | None = None,
    min_gaps: int = 8,
) -> WindowFits:
    """One censored fit per window of ``window_s`` seconds from 0, in one batch.

    A gap belongs to the window of the request that ends it. Windows with fewer
    than ``min_gaps`` gaps, or fewer than three distinct gap values, or judged not
    identifiable, get NaN shape and scale.
    """
    arrival = sorted_arrivals(arrival_s, non_negative=True)
    res = resolution or detect_resolution(arrival)
    gaps = np.diff(arrival)
    which = (arrival[1:] // window_s).astype(np.int64)
    windows = int(arrival[-1] // window_s) + 1 if arrival.size else 0
    ticks, tick = _ticks(gaps, res.tick_s)
    n = np.bincount(which, minlength=windows).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.bincount(which, weights=ticks, minlength=windows) / n
        var = np.bincount(which, weights=ticks**2, minlength=windows) / n - mean**2
    data = GapData.build(ticks, which, windows)
    batch = fit_batch(family, data, np.nan_to_num(mean, nan=1.0), np.nan_to_num(var, nan=1.0))
    distinct = np.bincount(data.window, minlength=windows)
    modal = np.zeros(windows)
    np.maximum.at(modal, data.window, data.n)
    with np.errstate(divide="ignore", invalid="ignore"):
        modal_share = modal / n
    ok = (
        (n >= min_gaps) & (distinct >= 3) & (modal_share < 0.95) & ~batch.at_bound
        & (batch.efficiency >= MIN_EFFICIENCY)
    )  # fmt: skip
    nan = np.full(windows, np.nan)
    with np.errstate(over="ignore"):
        spread = np.exp(_Z95 * batch.se_log_shape)
    return WindowFits(
        shape=np.where(ok, batch.shape, nan),
        scale=np.where(ok, batch.scale * tick, nan),
        shape_lo=np.where(ok, batch.shape / spread, nan),
        shape_hi=np.where(ok, batch.shape * spread, nan),
        loglik=np.where(n > 0, batch.loglik, nan),
        identifiable=ok,
    )


def censored_pmf(family: Family, shape: float, scale_ticks: float, k: np.ndarray) -> np.ndarray:
    """P(a gap is logged as ``k`` ticks) under ``family`` with ``shape`` and scale
    ``scale_ticks`` (in ticks), one value per entry of ``k`` (whole numbers >= 0).

    The same censored probability the fits maximise (see the module docstring), so
    a fit can be drawn as the logger would have recorded it.
    """
    k = np.asarray(k, dtype=np.float64)
    data = GapData(
        window=np.arange(k.size, dtype=np.int64),
        k=k,
        logk=np.log(np.maximum(k, 1e-300)),
        n=np.ones(k.size),
        exact=k < EXACT_TICKS,
        windows=k.size,
    )
    p0 = np.full(k.size, np.log(shape))
    p1 = np.full(k.size, np.log(scale_ticks))
    out: np.ndarray = np.exp(_loglik(family, data, p0, p1))
    return out
