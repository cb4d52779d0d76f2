"""Arrival models: a multi-scale doubly stochastic process, and the paper's per-window Gamma.

**Why a multi-scale Cox process with bursts.** Real LLM traffic is bursty at every
scale: requests come in batches within a fraction of a second (a code service
fanning out), cluster within seconds, minutes run hot or idle, hours surge, and
days cycle. The BurstGPT paper's model (a Gamma renewal process per 20-minute
window) keeps each window's mean rate and loses everything inside it, and it can
only replay the source's own rate curve. ServeGen adds many clients together,
which needs client ids that public traces do not have. A self-exciting (Hawkes)
process captures clustering within seconds but not slow surges. Here the rate
itself is random, and each arrival of it may be a burst:

    lambda(t) = nu * p(t) * exp(X_1(t) + ... + X_J(t)) / normaliser,

each ``X_j`` a stationary Ornstein-Uhlenbeck process with variance ``s_j`` and
correlation time ``tau_j`` (a geometric ladder from below the mean gap to half
the trace), so the rate moves at every scale, with heavy-tailed surges and
near-idle stretches from the lognormal law; ``p`` is the daily cycle
(:class:`DailyProfile`, fitted when the trace spans three days or more; the
process runs in the operational time where the cycle is gone). Inside the
rate, *burst starts* follow a Gamma renewal process of shape ``gap_shape``
(< 1: clumps; > 1: smoother than Poisson, as on a batching grid), and each start
brings a geometric number of requests of mean ``cluster_mean``, spread over
``Exp(cluster_spread_s)`` (``cluster_mean`` 1: no bursts). An on/off factor may
multiply the rate: a two-state Markov source on a share ``on_share`` of the time,
switching on a time scale ``on_off_s``, at ``off_level`` times its on rate when
off (idle stretches; ``on_share`` 1: none).

**Fitting by the variance-time curve.** For this process the index of dispersion
of counts in bins of ``w`` seconds has a closed form:

    IDC(w) = 1 + 2 (kappa - 1) phi(w / spread) + kappa (R(w) + M(w) - 1),
    M(w) = (2 nu / w) int_0^w (w - u) (exp(sum_j s_j e^{-u/tau_j}) - 1) du,

with ``nu = mu / kappa`` the rate of burst starts (with on/off, ``M`` gains the factor
``1 + v e^{-u/on_off_s}``, ``v`` the on/off excess variance), ``phi(x) = 1 - (1 - e^-x) / x``
the chance that two members of a burst share a bin, and ``R(w)`` the renewal
process's IDC averaged over the lognormal law of a bin's expected count (exact
from its renewal density, a sum of Gamma densities). The fit matches ``ln IDC``
of the trace at ~24 bin widths from the timestamp tick (or a fiftieth of the mean
gap) to a twentieth of the span, weighted by how many bins each estimate rests
on and corrected for the share of variance a finite sample's own mean absorbs, by
bounded least squares with a small ridge on ``s``. Bins are aligned with the
timestamp grid, so whole-second logging biases none of it.

The curve does not pin down how gaps are spread (a lognormal rate with large
variance and bursts can give the same curve), so six structures are fitted
(bursts or not; gap shape free or 1; on/off or not, where the curve fixes only
``v`` and each off level in :data:`OFF_LEVELS` gives the on share), each is
simulated over a stretch of the trace, and the one whose gaps (KS), CV and IDC
look most like the trace's is kept.

The fitted model is a generator, not a copy: any ``--duration``, a new path for
every seed, and at ``--rps`` the source's process played ``rps / mean_rps`` times
faster (every time scale shrinks, as a replay at that speed), with the mean rate
exact over the workload.

What-if knobs: ``burstiness`` multiplies every ``s_j`` and divides the gap
shape (2: burstier at every scale, same mean rate); ``shape`` fixes the gap shape.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import optimize, special
from scipy.signal import lfilter

from burstlab.analyze.burstiness import count_moments, count_sums, idc_of_sums, window_series
from burstlab.analyze.gaps import Resolution, detect_resolution, on_grid, sorted_arrivals

#: Bin widths of the variance-time fit, and the ratio between OU time scales.
FIT_SCALES = 24
TAU_RATIO = 4.0
#: Grid steps of the rate path per generated chunk (bounds memory for long workloads).
CHUNK_STEPS = 1 << 20
#: Parameters before the log-rate variances: ln shape, ln burst size, ln spread,
#: ln(1 + off/on excess), ln on/off time scale.
FIXED = 5
#: Smallest on share of an on/off source the fit considers.
MIN_ON_SHARE = 0.02
#: Largest mean burst size the fit considers.
MAX_CLUSTER = 200.0
#: Most grid steps of one rate path (a longer workload gets coarser steps).
MAX_STEPS = 1 << 24


DAY_S = 86_400.0
#: A daily profile is fitted from this many days of trace on, and this many requests
#: per slot of the day on average.
PROFILE_MIN_DAYS = 3.0
PROFILE_MIN_PER_SLOT = 20


class DailyProfile(BaseModel):
    """The rate's daily cycle: a factor per ``bin_s`` slot of the day (mean 1), in the
    trace's own clock (its ``arrival_s`` = 0 is taken as midnight).

    The multi-scale process runs in *operational time* ``P(t) = int_0^t p(s) ds``,
    where the cycle is gone; real times come back through the inverse of ``P``.
    """

    model_config = ConfigDict(extra="forbid")

    bin_s: float = Field(gt=0)
    factors: list[float]

    def _cumulative(self) -> tuple[np.ndarray, np.ndarray]:
        factors = np.asarray(self.factors)
        return factors, np.concatenate([[0.0], np.cumsum(factors * self.bin_s)])

    def to_operational(self, t: np.ndarray) -> np.ndarray:
        """``P(t)`` for times ``t`` (s)."""
        factors, cum = self._cumulative()
        day, within = np.divmod(t, DAY_S)
        slot = np.minimum((within // self.bin_s).astype(np.int64), factors.size - 1)
        out: np.ndarray = day * cum[-1] + cum[slot] + factors[slot] * (within - slot * self.bin_s)
        return out

    def to_real(self, u: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`to_operational`."""
        factors, cum = self._cumulative()
        day, within = np.divmod(u, cum[-1])
        slot = np.clip(np.searchsorted(cum, within, side="right") - 1, 0, factors.size - 1)
        out: np.ndarray = day * DAY_S + slot * self.bin_s + (within - cum[slot]) / factors[slot]
        return out


def daily_profile(arrival_s: np.ndarray, bin_s: float = 600.0) -> DailyProfile | None:
    """Requests per slot of the day over whole days, smoothed over three slots and
    scaled to mean 1 (floored at 0.05); None under :data:`PROFILE_MIN_DAYS` days or
    :data:`PROFILE_MIN_PER_SLOT` requests per slot."""
    span = float(arrival_s[-1] - arrival_s[0]) if arrival_s.size else 0.0
    slots = round(DAY_S / bin_s)
    if span < PROFILE_MIN_DAYS * DAY_S or arrival_s.size < PROFILE_MIN_PER_SLOT * slots:
        return None
    whole = arrival_s[arrival_s < (span // DAY_S) * DAY_S]
    counts = np.bincount(((whole % DAY_S) // bin_s).astype(np.int64), minlength=slots)
    counts = counts[:slots].astype(np.float64)
    smooth = (np.roll(counts, 1) + counts + np.roll(counts, -1)) / 3
    factors = smooth / smooth.mean() if smooth.mean() > 0 else np.ones(slots)
    factors = np.maximum(factors, 0.05)
    return DailyProfile(bin_s=DAY_S / slots, factors=(factors / factors.mean()).tolist())


class MultiscaleArrivals(BaseModel):
    """A fitted multi-scale Cox process (see the module docstring); times in seconds."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["multiscale"] = "multiscale"
    mean_rps: float = Field(gt=0)
    gap_shape: float = Field(gt=0)
    tau_s: list[float]
    variance: list[float]
    cluster_mean: float = Field(1.0, ge=1.0)
    cluster_spread_s: float = Field(0.0, ge=0.0)
    on_share: float = Field(1.0, gt=0.0, le=1.0)
    on_off_s: float = Field(0.0, ge=0.0)
    off_level: float = Field(0.0, ge=0.0, lt=1.0)
    profile: DailyProfile | None = None
    resolution_s: float | None
    fit_scales_s: list[float]
    fit_idc: list[float]
    model_idc: list[float]

    def sample(
        self,
        rng: np.random.Generator,
        duration_s: float,
        rate_rps: float,
        *,
        per_event: float = 1.0,
        burstiness: float = 1.0,
        shape: float | None = None,
    ) -> np.ndarray:
        """Sorted event times in ``[0, duration_s)`` for a request rate of ``rate_rps``.

        The workload is the source's process played ``rate_rps / mean_rps`` times
        faster (every time scale shrinks by that factor, as a replay at that speed);
        each event stands for ``per_event`` requests (a session's turns), so events
        come ``per_event`` times less often.
        """
        if rate_rps <= 0 or duration_s <= 0:
            return np.zeros(0)
        speed = rate_rps / self.mean_rps  # the source's process played this many times faster
        span = duration_s * speed
        s = np.asarray(self.variance) * burstiness
        tau = np.asarray(self.tau_s)
        a = (shape if shape is not None else self.gap_shape) / burstiness
        kappa = self.cluster_mean
        parents_rps = self.mean_rps / per_event / kappa
        real_span = span
        if self.profile is not None:  # run in operational time, P(span) long
            span = float(self.profile.to_operational(np.array([real_span]))[0])
        step = _step(tau, span, parents_rps)
        log_rate = _ou_sum(rng, tau, s, span, step)
        rate = np.exp(log_rate - log_rate.max())
        if self.on_share < 1.0 and self.on_off_s > 0:
            on = _on_off_mask(rng, self.on_share, self.on_off_s, rate.size, step)
            if on.any():
                rate = rate * np.where(on, 1.0, self.off_level)
        rate *= parents_rps * real_span / (rate.sum() * step)  # the mean over real time
        times = _renewal_in_operational_time(rng, rate, step, span, a)
        if kappa > 1.0:  # each parent brings a geometric burst spread over Exp(spread)
            size = rng.geometric(1.0 / kappa, times.size)
            times = np.repeat(times, size)
            if self.cluster_spread_s > 0:
                times = times + rng.exponential(self.cluster_spread_s, times.size)
            times = np.sort(times[times < span])
        if self.profile is not None:
            times = self.profile.to_real(times)
            times = times[times < real_span]
        out: np.ndarray = times / speed
        return out


def _on_off_mask(
    rng: np.random.Generator, on_share: float, scale_s: float, steps: int, step: float
) -> np.ndarray:
    """Whether a two-state Markov source is on at each grid step's middle: on a share
    ``on_share`` of the time, switching on a time scale ``scale_s`` (mean spells
    ``scale_s / (1 - on_share)`` on and ``scale_s / on_share`` off), started in its
    stationary law. The caller scales the off steps by the off level."""
    span = steps * step
    on_mean, off_mean = scale_s / (1 - on_share), scale_s / on_share
    cycles = int(span / (on_mean + off_mean) * 1.5) + 10
    spells = rng.exponential(1.0, 2 * cycles) * np.tile([on_mean, off_mean], cycles)
    if rng.random() >= on_share:  # start off: drop the first on spell
        spells = spells[1:]
        first_on = False
    else:
        first_on = True
    ends = np.cumsum(spells)
    while ends[-1] < span:  # rare: extend
        more = rng.exponential(1.0, 2 * cycles) * np.tile(
            [on_mean, off_mean] if (ends.size % 2 == 0) == first_on else [off_mean, on_mean],
            cycles,
        )
        ends = np.concatenate([ends, ends[-1] + np.cumsum(more)])
    spell = np.searchsorted(ends, (np.arange(steps) + 0.5) * step, side="right")
    on: np.ndarray = (spell % 2 == 0) == first_on
    return on


def _step(tau: np.ndarray, duration_s: float, rate_rps: float) -> float:
    """Grid step of the rate path: a quarter of the fastest scale and a tenth of the
    mean gap at most, but no finer than a twentieth of the mean gap (faster components
    enter through their average over a step) and at most :data:`MAX_STEPS` steps."""
    finest = float(tau.min()) / 4 if tau.size else duration_s
    step = max(min(finest, 0.1 / rate_rps, duration_s), 0.05 / rate_rps)
    return max(step, duration_s / MAX_STEPS)


def _ou_sum(
    rng: np.random.Generator, tau: np.ndarray, s: np.ndarray, duration_s: float, step: float
) -> np.ndarray:
    """Sum of stationary OU paths (variance ``s``, time scale ``tau``) averaged over grid
    steps, chunked.

    The average of an OU path over a step of ``x = step / tau`` time scales has
    variance ``s * 2 (x - 1 + e^-x) / x^2``; consecutive averages are taken as AR(1)
    with ``phi = e^-x``, exact for slow components and harmless for fast ones.
    """
    steps = max(1, math.ceil(duration_s / step))
    total = np.zeros(steps)
    for tj, sj in zip(tau, s, strict=True):
        if sj <= 0:
            continue
        x = step / tj
        var = sj * (2 * (x - 1 + math.exp(-x)) / (x * x) if x > 1e-6 else 1.0)
        phi = math.exp(-x)
        sd = math.sqrt(var * (1 - phi * phi))
        state = np.array([rng.standard_normal() * math.sqrt(var) * phi])
        for lo in range(0, steps, CHUNK_STEPS):
            hi = min(lo + CHUNK_STEPS, steps)
            path, state = lfilter([1.0], [1.0, -phi], rng.standard_normal(hi - lo) * sd, zi=state)
            total[lo:hi] += path
    return total


def _renewal_in_operational_time(
    rng: np.random.Generator, rate: np.ndarray, step: float, duration_s: float, shape: float
) -> np.ndarray:
    """Gamma(shape) renewal events of unit mean in operational time, mapped to real time.

    ``rate`` is piecewise constant on steps of ``step`` seconds, so the map back is
    exact: inside step k, t = k step + (E - Lambda_k) / rate_k.
    """
    cumulative = np.concatenate([[0.0], np.cumsum(rate * step)])
    total = float(cumulative[-1])
    count = int(total + 10 * math.sqrt(total / min(shape, 1.0)) + 20)
    gaps = rng.gamma(shape, 1.0 / shape, count)
    events = np.cumsum(gaps) - gaps[0] * rng.random()  # a uniform start inside the first gap
    while events[-1] < total:  # rare: draw more
        more = np.cumsum(rng.gamma(shape, 1.0 / shape, count)) + events[-1]
        events = np.concatenate([events, more])
    events = events[(events >= 0) & (events < total)]
    k = np.clip(np.searchsorted(cumulative, events, side="right") - 1, 0, rate.size - 1)
    times = k * step + (events - cumulative[k]) / np.maximum(rate[k], 1e-300)
    out: np.ndarray = np.sort(times[times < duration_s])
    return out


# --- fitting ------------------------------------------------------------------------------


def renewal_idc(shape: float, expected: np.ndarray) -> np.ndarray:
    """IDC of a stationary Gamma(shape) renewal process over ``expected`` mean events.

    Var N(L) = L + 2 sum_n [L P(n a, a L) - n P(n a + 1, a L)] - L^2 (unit mean gaps,
    ``P`` the regularised lower incomplete gamma), from the renewal density, a sum of
    Gamma densities, on 64 points of L from 1e-4 to 200 and interpolated in ln L;
    beyond L = 200, Var N(L) = L / a + c with c taken at 200.
    """
    expected = np.asarray(expected, dtype=np.float64)
    if abs(shape - 1.0) < 1e-9:
        return np.ones_like(expected)
    table, c = _renewal_table(float(shape))
    safe = np.maximum(expected, 1e-12)
    near = np.interp(np.log(safe), _RENEWAL_LOG_GRID, table, left=1.0)
    far = 1.0 / shape + c / safe
    ratio = np.where(expected > 200.0, far, near)
    out: np.ndarray = np.maximum(ratio, 1e-6)
    return out


_RENEWAL_GRID = np.geomspace(1e-4, 200.0, 64)
_RENEWAL_LOG_GRID = np.log(_RENEWAL_GRID)


@functools.lru_cache(maxsize=64)
def _renewal_table(shape: float) -> tuple[np.ndarray, float]:
    """Var N(L) / L on the grid, and the constant ``c`` of ``Var N(L) = L / a + c``
    beyond it (cached: a least-squares fit asks for the same shape many times)."""
    grid = _RENEWAL_GRID
    top = float(grid[-1])
    n = np.arange(1, int(top + 12 * math.sqrt(top / min(shape, 1.0)) + 60))[None, :]
    lc = grid[:, None]
    terms = lc * special.gammainc(n * shape, shape * lc) - n * special.gammainc(
        n * shape + 1, shape * lc
    )
    table = (grid + 2 * terms.sum(axis=1) - grid**2) / grid
    table.setflags(write=False)
    return table, float(table[-1] * top) - top / shape


_HERMITE = (
    np.polynomial.hermite_e.hermegauss(16)[0],
    np.polynomial.hermite_e.hermegauss(16)[1] / math.sqrt(2 * math.pi),
)


def mixed_renewal_idc(
    shape: float,
    mean_rps: float,
    widths_s: np.ndarray,
    tau_s: np.ndarray,
    variance: np.ndarray,
    *,
    on_off: tuple[float, float] = (1.0, 0.0),
) -> np.ndarray:
    """The renewal share of the IDC under a moving rate: ``E[(L/m) r(L)]`` over the
    lognormal law of a bin's expected count ``L`` (mean ``m = mean_rps * w``), by
    Gauss-Hermite quadrature. A component of time scale ``tau`` moves the count of a
    ``w``-second bin with variance ``s * 2 (x - 1 + e^-x) / x^2``, ``x = w / tau``.
    An on/off source (on share ``p``, time scale ``t``: ``on_off``) puts a bin's
    requests into its on share ``1 - (1 - p) * damp(w / t)`` (the same damping).
    """
    nodes, weights = _HERMITE
    on_share, scale = on_off
    if on_share < 1.0 and scale > 0:
        xm = widths_s / scale
        with np.errstate(divide="ignore", invalid="ignore"):
            damp_m = np.where(xm > 1e-6, 2 * (xm - 1 + np.exp(-xm)) / xm**2, 1.0)
        busy = 1.0 - (1.0 - on_share) * damp_m
    else:
        busy = np.ones(widths_s.size)
    x = widths_s[:, None] / tau_s[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        damp = np.where(x > 1e-6, 2 * (x - 1 + np.exp(-x)) / x**2, 1.0)
    sigma2 = (variance[None, :] * damp).sum(axis=1) if tau_s.size else np.zeros(widths_s.size)
    factor = np.exp(np.sqrt(sigma2)[:, None] * nodes[None, :] - sigma2[:, None] / 2)
    expected = mean_rps * (widths_s / busy)[:, None] * factor
    r = renewal_idc(shape, expected.ravel()).reshape(expected.shape)
    out: np.ndarray = (weights[None, :] * factor * r).sum(axis=1)
    return out


def cluster_idc(kappa: float, spread_s: float, widths_s: np.ndarray) -> np.ndarray:
    """IDC of bursts alone: ``1 + c phi(w / spread)`` with ``c = E[K(K-1)] / E[K] =
    2 (kappa - 1)`` for geometric burst sizes ``K`` of mean ``kappa``, and ``phi(x) =
    1 - (1 - e^-x) / x`` the chance that two members (Exp(spread) offsets from their
    parent, so a Laplace difference) share a bin of width ``w``."""
    x = widths_s / max(spread_s, 1e-12)
    with np.errstate(over="ignore"):
        phi = np.where(x > 1e-8, 1 - (-np.expm1(-x)) / np.maximum(x, 1e-300), x / 2)
    out: np.ndarray = 1.0 + 2.0 * (kappa - 1.0) * phi
    return out


_LOG_X = np.linspace(math.log(1e-7), 0.0, 400)


def modulation_idc(
    mean_rps: float, widths_s: np.ndarray, tau_s: np.ndarray, variance: np.ndarray
) -> np.ndarray:
    """The rate process's share of the IDC at each width (see the module docstring),
    by the trapezoid rule in ln u on 400 points from 1e-7 w to w."""
    return mean_rps * (modulation_kernel(widths_s, tau_s) @ np.asarray(variance, dtype=float))


def modulation_kernel(widths_s: np.ndarray, tau_s: np.ndarray) -> _Kernel:
    """The parts of :func:`modulation_idc` that do not depend on the variances."""
    return _Kernel(np.asarray(widths_s, dtype=float), np.asarray(tau_s, dtype=float))


class _Kernel:
    """``(2 / w) int_0^w (w - u) (exp(sum_j s_j e^{-u / tau_j}) - 1) du`` for any ``s``:
    the decays ``e^{-u / tau_j}`` on each width's grid are computed once."""

    def __init__(self, widths: np.ndarray, tau: np.ndarray) -> None:
        x = np.exp(_LOG_X)
        self.u = widths[:, None] * x[None, :]  # (W, X)
        self.decay = np.exp(-self.u[:, :, None] / tau[None, None, :])  # (W, X, J)
        self.widths = widths
        step = np.diff(_LOG_X)
        weights = np.zeros(x.size)  # trapezoid weights in ln u
        weights[:-1] += step / 2
        weights[1:] += step / 2
        self.weights = weights

    def __matmul__(self, variance: np.ndarray) -> np.ndarray:
        return self.with_on_off(variance, 0.0, 1.0)

    def with_on_off(self, variance: np.ndarray, excess: float, scale_s: float) -> np.ndarray:
        """The integral with an on/off factor of covariance ``excess * e^{-u / scale}``
        (``excess = (1 - p) / p`` for an on share ``p``) multiplying the lognormal one."""
        g = np.expm1(self.decay @ variance)  # (W, X)
        if excess > 0:
            g = (g + 1.0) * (1.0 + excess * np.exp(-self.u / scale_s)) - 1.0
        w = self.widths[:, None]
        integral = ((w - self.u) * g * self.u) @ self.weights + self.widths * g[:, 0] * self.u[:, 0]
        out: np.ndarray = 2.0 / self.widths * integral
        return out


def fit_multiscale(
    arrival_s: np.ndarray, resolution: Resolution | None = None, *, seed: int = 0
) -> MultiscaleArrivals:
    """Fit the multi-scale process to sorted ``arrival_s`` (seconds).

    Six structures are fitted to the IDC curve (with and without bursts; the gap
    shape inside the rate free or fixed at 1; with and without an on/off factor),
    after the daily cycle is taken out
    when the trace spans three days or more. The curve does not pin down how the
    gaps are spread, so each is then simulated over (a stretch of) the trace's own
    span and the one whose gaps and counts look most like the trace's is kept (see
    :func:`_score`).
    """
    arrival = sorted_arrivals(arrival_s)
    if arrival.size < 3:
        raise ValueError("fitting arrivals needs at least 3 requests")
    res = resolution or detect_resolution(arrival)
    tick = res.tick_s or 0.0
    real = arrival - arrival[0]
    profile = daily_profile(real)
    arrival = profile.to_operational(real) if profile is not None else real
    span = float(arrival[-1])
    mu = (arrival.size - 1) / span if span > 0 else 1.0
    lo = max(tick, 0.02 / mu, 1e-4)
    if span / 20 <= lo:
        return MultiscaleArrivals(
            mean_rps=mu, gap_shape=1.0, tau_s=[], variance=[], resolution_s=res.tick_s,
            fit_scales_s=[], fit_idc=[], model_idc=[],
        )  # fmt: skip
    widths = np.geomspace(lo, span / 20, FIT_SCALES)
    if tick > 0:
        widths = np.unique(np.maximum(np.rint(widths / tick), 1) * tick)
    moments = [_curve_point(arrival, float(w), tick) for w in widths]
    idc = np.array([m[0] for m in moments])
    bins = np.array([m[1] for m in moments], dtype=np.float64)
    ok = np.isfinite(idc) & (idc > 0) & (bins >= 10)
    curve = _Curve((mu, span), widths[ok], idc[ok], bins[ok], (lo, tick))
    update = {"resolution_s": res.tick_s, "profile": profile}
    structures = [(b, p, False) for b in (False, True) for p in (False, True)]
    structures += [(False, p, True) for p in (False, True)]
    candidates = [
        curve.fit(bursts=b, poisson=p, on_off=o).model_copy(update=update) for b, p, o in structures
    ]
    candidates = [v for c in candidates for v in _off_levels(c)]
    scores = [_score(c, real, tick, seed) for c in candidates]
    return candidates[int(np.argmin(scores))]


#: Rates while "off", relative to "on", tried for an on/off source.
OFF_LEVELS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.4)


def _off_levels(model: MultiscaleArrivals) -> list[MultiscaleArrivals]:
    """An on/off fit fixes only the rate's excess variance ``v``; each off level ``r``
    gives on shares ``p`` with ``p (1 - p) (1 - r)^2 / (p + (1 - p) r)^2 = v`` (up to two
    roots), and the simulation score picks among them."""
    if model.on_share >= 1.0:
        return [model]
    v = (1.0 - model.on_share) / model.on_share
    q = np.geomspace(1e-3, 0.999, 4000)
    out: list[MultiscaleArrivals] = []
    for r in OFF_LEVELS:
        excess = q * (1 - q) * (1 - r) ** 2 / (q + (1 - q) * r) ** 2 - v
        cross = np.flatnonzero(np.diff(np.sign(excess)) != 0)
        roots = {int(cross[0]), int(cross[-1])} if cross.size else set()
        out.extend(
            model.model_copy(update={"on_share": float(q[i]), "off_level": r}) for i in roots
        )
    return out or [model]


#: Above this many requests, IDC at widths with more bins than requests is pooled over
#: evenly spaced stretches holding this many requests in all (bins are plenty there).
CURVE_REQUESTS = 2_000_000
CURVE_STRETCHES = 20


def _curve_point(arrival: np.ndarray, width: float, tick: float) -> tuple[float, int]:
    """IDC at one width for the fit, and its bins: exact, or pooled over stretches for a
    long trace at a width finer than its mean gap x 4."""
    span = float(arrival[-1] - arrival[0])
    if arrival.size <= CURVE_REQUESTS or span / width * 4 < arrival.size:
        return count_moments(arrival, width, tick)
    size = CURVE_REQUESTS // CURVE_STRETCHES
    starts = np.linspace(0, arrival.size - size, CURVE_STRETCHES).astype(np.int64)
    sums = [count_sums(arrival[i : i + size], width, tick) for i in starts]
    total, squares, bins = (sum(x) for x in zip(*sums, strict=True))
    return idc_of_sums(total, squares, int(bins)), int(bins)


class _Curve:
    """The trace's IDC curve and the least-squares fit of the process to it."""

    def __init__(
        self, rates: tuple[float, float], widths: np.ndarray, idc: np.ndarray,
        bins: np.ndarray, grid: tuple[float, float],
    ) -> None:  # fmt: skip
        """``rates`` is (mean rate, span); ``grid`` is (smallest width, tick)."""
        (self.mu, self.span), (self.lo, self.tick) = rates, grid
        span, lo = self.span, self.lo
        self.widths, self.idc, self.bins = widths, idc, bins
        tau = lo / 2 * TAU_RATIO ** np.arange(60)
        tau = tau[tau <= span / 2]
        self.tau = tau if tau.size else np.array([span / 4])
        self.every = np.append(widths, span)
        self.kernel = modulation_kernel(self.every, self.tau)
        # the standard error of ln IDC is about sqrt(2 / bins)
        self.weight = 1.0 / np.sqrt(2.0 / bins + 0.02**2)

    def expected(self, p: np.ndarray) -> np.ndarray:
        """The IDC a sample of this span shows: the sample mean absorbs IDC(span) / bins."""
        a, kappa, spread, s = math.exp(p[0]), math.exp(p[1]), math.exp(p[2]), p[FIXED:]
        excess, scale = math.expm1(p[3]), math.exp(p[4])
        nu = self.mu / kappa
        on_off = (1.0 / (1.0 + excess), scale)
        curve = cluster_idc(kappa, spread, self.every) + kappa * (
            mixed_renewal_idc(a, nu, self.every, self.tau, s, on_off=on_off)
            + nu * self.kernel.with_on_off(s, excess, scale)
            - 1.0
        )
        out: np.ndarray = np.maximum(curve[:-1] - curve[-1] / self.bins, 1e-3)
        return out

    def fit(self, *, bursts: bool, poisson: bool, on_off: bool) -> MultiscaleArrivals:
        """Least squares on ln IDC; ``bursts`` frees the burst size, ``poisson`` fixes
        the gap shape inside the rate at 1, ``on_off`` frees an on/off factor."""
        ridge = 0.05
        n = self.tau.size

        def residuals(p: np.ndarray) -> np.ndarray:
            misfit = (np.log(self.expected(p)) - np.log(self.idc)) * self.weight
            return np.concatenate([misfit, ridge * p[FIXED:]])

        spread_lo = math.log(max(self.tick / 10, 1e-5))
        top = math.log(MAX_CLUSTER) if bursts else 1e-9
        shape_lo, shape_hi = (0.0, 1e-9) if poisson else (math.log(0.05), math.log(20.0))
        excess_hi = math.log(1.0 / MIN_ON_SHARE) if on_off else 1e-9
        scale_lo, scale_hi = math.log(self.lo), math.log(max(self.span / 4, self.lo * 2))
        lower = np.concatenate([[shape_lo, 0.0, spread_lo, 0.0, scale_lo], np.zeros(n)])
        upper = np.concatenate(
            [[shape_hi, top, math.log(self.span / 20), excess_hi, scale_hi], np.full(n, 4.0)]
        )
        start = np.concatenate(
            [[0.0, math.log(1.2), math.log(self.lo), math.log(1.5), (scale_lo + scale_hi) / 2],
             np.full(n, 0.1)]
        )  # fmt: skip
        start = np.clip(start, lower, upper)
        p = optimize.least_squares(residuals, start, bounds=(lower, upper)).x
        a, kappa, spread, s = math.exp(p[0]), math.exp(p[1]), math.exp(p[2]), p[FIXED:]
        on_share = 1.0 / (1.0 + math.expm1(p[3]))
        keep = s > 1e-6
        clustered = kappa > 1.01
        switching = on_share < 0.99
        return MultiscaleArrivals(
            mean_rps=self.mu,
            gap_shape=a,
            tau_s=self.tau[keep].tolist(),
            variance=s[keep].tolist(),
            cluster_mean=kappa if clustered else 1.0,
            cluster_spread_s=spread if clustered else 0.0,
            on_share=on_share if switching else 1.0,
            on_off_s=math.exp(p[4]) if switching else 0.0,
            resolution_s=None,
            fit_scales_s=self.widths.tolist(),
            fit_idc=self.idc.tolist(),
            model_idc=self.expected(p).tolist(),
        )


#: Requests simulated per candidate when choosing a structure.
SCORE_REQUESTS = 30_000


def _score(model: MultiscaleArrivals, arrival: np.ndarray, tick: float, seed: int) -> float:
    """How unlike the trace a model's traffic is, over a stretch of the trace's length
    holding up to :data:`SCORE_REQUESTS` requests, logged on its grid: the KS distance
    of gaps over their mean, plus |ln| of the CV ratio and of the IDC ratio at 1, 10
    and 60 s (those judged on both sides), averaged over two paths."""
    span = float(arrival[-1] - arrival[0])
    length = min(span, SCORE_REQUESTS / model.mean_rps)
    piece = arrival[arrival - arrival[0] <= length]
    piece = piece - piece[0]
    ref = _traffic_stats(piece, tick)
    total = 0.0
    for k in range(2):
        gen = model.sample(np.random.default_rng([seed, k]), length, model.mean_rps)
        gen = on_grid(gen, tick)
        got = _traffic_stats(gen, tick)
        if got is None or ref is None:
            return math.inf
        gaps = np.sort(got[0])
        ks = float(np.abs(np.searchsorted(gaps, ref[3], side="right") / gaps.size - ref[4]).max())
        ratios = [abs(math.log(g / r)) for g, r in zip(got[1:3], ref[1:3], strict=True) if g > 0]
        total += ks + float(np.mean(ratios)) if ratios else ks
    return total / 2


def _traffic_stats(
    arrival: np.ndarray, tick: float
) -> tuple[np.ndarray, float, float, np.ndarray, np.ndarray] | None:
    """(gaps over their mean, CV, mean IDC over 1/10/60 s, CDF grid, CDF values)."""
    gaps = np.diff(arrival)
    if gaps.size < 10 or gaps.mean() <= 0:
        return None
    norm = gaps / gaps.mean()
    idcs = [count_moments(arrival, w, tick)[0] for w in (1.0, 10.0, 60.0) if w >= tick]
    idcs = [v for v in idcs if np.isfinite(v) and v > 0]
    idc = float(np.exp(np.mean(np.log(idcs)))) if idcs else 1.0
    grid = np.quantile(norm, np.linspace(0, 1, 201), method="inverted_cdf")
    cdf = np.searchsorted(np.sort(norm), grid, side="right") / norm.size
    return norm, float(gaps.std() / gaps.mean()), idc, grid, cdf


# --- the paper's per-window Gamma ---------------------------------------------------------


class ArrivalWindow(BaseModel):
    """Arrivals in one window: mean rate (req/s over the part of the window the trace
    covers) and the Gamma fit of its gaps (None when too few to fit)."""

    model_config = ConfigDict(extra="forbid")

    rate_rps: float
    shape: float | None
    scale: float | None


class WindowGammaArrivals(BaseModel):
    """BurstGPT's model: a Gamma renewal process per window at the window's rate.

    It replays the source's sequence of window rates (repeating it when longer)
    with fresh gaps. ``zero_gap_share`` is only set by models of format version 1,
    which mimicked same-second logging by zeroing that share of gaps.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["window-gamma"] = "window-gamma"
    window_s: float = Field(gt=0)
    windows: list[ArrivalWindow]
    zero_gap_share: float = Field(0.0, ge=0.0, le=0.99)

    def sample(
        self,
        rng: np.random.Generator,
        duration_s: float,
        factor: float,
        *,
        burstiness: float = 1.0,
        shape: float | None = None,
    ) -> np.ndarray:
        """Event times in ``[0, duration_s)``, every window's rate times ``factor``."""
        chunks = []
        for k in range(math.ceil(duration_s / self.window_s)):
            w = self.windows[k % len(self.windows)]
            rate = w.rate_rps * factor
            if rate <= 0:
                continue
            k_shape = (shape or w.shape or 1.0) / burstiness
            mean_gap = 1.0 / (rate * (1.0 - self.zero_gap_share))
            start, end = k * self.window_s, min((k + 1) * self.window_s, duration_s)
            count = int(rate * (end - start) * 1.3 + 10 * np.sqrt(rate * (end - start)) + 10)
            gaps = rng.gamma(k_shape, mean_gap / k_shape, count)
            if self.zero_gap_share > 0:
                gaps[rng.random(count) < self.zero_gap_share] = 0.0
            offsets = start + rng.random() * gaps[0] + np.cumsum(gaps) - gaps[0]
            chunks.append(offsets[offsets < end])
        return np.concatenate(chunks) if chunks else np.zeros(0)


def fit_window_gamma(
    arrival_s: np.ndarray, window_s: float, resolution: Resolution | None = None
) -> WindowGammaArrivals:
    """Per-window rate and censored Gamma fit of sorted ``arrival_s`` from 0."""
    windows = window_series(arrival_s, window_s, resolution)
    return WindowGammaArrivals(
        window_s=window_s,
        windows=[
            ArrivalWindow(rate_rps=r, shape=s, scale=c)
            for r, s, c in zip(windows.rate_rps, windows.shape, windows.scale, strict=True)
        ],
    )
