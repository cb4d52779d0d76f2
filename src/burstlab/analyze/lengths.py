"""Request and response lengths: fitted distributions, bimodality, and their relation.

Token counts are positive integers. Three candidate models are compared by the
Kolmogorov-Smirnov distance to the data: a discrete power law (Zipf) above a
fitted ``xmin`` (maximum likelihood with the Hurwitz zeta normaliser, xmin
chosen by minimum KS as in Clauset, Shalizi and Newman 2009), a lognormal
(moments of ln x), and the empirical distribution itself (always KS 0, named
best only when neither parametric model comes within 0.05).

Bimodality needs two witnesses: Sarle's coefficient of ln(x) above 5/9, and a
second mode in the smoothed histogram the report draws (log-spaced bins,
density per token) with a real dip before it. Sarle's coefficient alone flags
skewed one-mode shapes (a decreasing or flat histogram of tokens reaches 0.6);
a decreasing histogram has no second local maximum, so it is never flagged.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict
from scipy import optimize, special, stats

#: A parametric model is named best only when its KS distance is at most this.
GOOD_FIT_KS = 0.05
#: Sarle's bimodality coefficient above 5/9 suggests two modes.
BIMODAL_COEFFICIENT = 5 / 9
#: A second mode counts when the density dips at least this much below it (a share of
#: the lower of the two peaks) ...
MODE_DIP = 0.2
#: ... the dip is at least this many standard errors (Poisson counts) deep ...
MODE_DIP_SE = 3.0
#: ... and the smaller mode's side of the dip holds at least this share of the data.
MODE_MASS = 0.05


class ZipfFit(BaseModel):
    """Discrete power law ``P(x) ~ x^-exponent`` for ``x >= xmin``; ``tail_share`` of data."""

    model_config = ConfigDict(extra="forbid")

    exponent: float
    xmin: int
    tail_share: float
    ks: float


class LognormalFit(BaseModel):
    """Lognormal with ``mu``/``sigma`` of ln(tokens)."""

    model_config = ConfigDict(extra="forbid")

    mu: float
    sigma: float
    ks: float


class LengthFit(BaseModel):
    """Distribution summary and fits of one length column of one class."""

    model_config = ConfigDict(extra="forbid")

    count: int
    mean: float
    p50: float
    p99: float
    zipf: ZipfFit | None
    lognormal: LognormalFit | None
    best: str
    bimodality_coefficient: float | None
    second_mode: float | None
    bimodal: bool


class Relation(BaseModel):
    """Least-squares line ``output = slope * input + intercept`` and, per log-spaced input
    bin (``bin_input`` is its geometric centre), the output's median, mean and 90% band
    (``bin_p5_output`` to ``bin_p95_output``) over ``bin_count`` requests.

    A constant input column gives slope 0, the mean output as intercept, R² 0 and one bin.
    """

    model_config = ConfigDict(extra="forbid")

    slope: float
    intercept: float
    r_squared: float
    bin_input: list[float]
    bin_median_output: list[float]
    bin_mean_output: list[float]
    bin_p5_output: list[float]
    bin_p95_output: list[float]
    bin_count: list[int]


def _unique_counts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values, counts = np.unique(x, return_counts=True)
    return values.astype(np.float64), counts


def zipf_mle(values: np.ndarray, counts: np.ndarray, xmin: int) -> float:
    """MLE exponent of a discrete power law on the data at or above ``xmin``."""
    tail = values >= xmin
    n = counts[tail].sum()
    sum_log = float((counts[tail] * np.log(values[tail])).sum())

    def nll(alpha: float) -> float:
        return float(n * np.log(special.zeta(alpha, xmin)) + alpha * sum_log)

    return float(optimize.minimize_scalar(nll, bounds=(1.0001, 8.0), method="bounded").x)


def _zipf_ks(values: np.ndarray, counts: np.ndarray, xmin: int, alpha: float) -> float:
    tail = values >= xmin
    v, c = values[tail], counts[tail]
    empirical = np.cumsum(c) / c.sum()
    model = 1.0 - special.zeta(alpha, v + 1) / special.zeta(alpha, xmin)
    return float(np.abs(empirical - model).max())


def fit_zipf(x: np.ndarray, *, candidates: int = 24) -> ZipfFit | None:
    """Power-law fit with ``xmin`` chosen among quantiles of the data by minimum KS."""
    x = x[x >= 1]
    if x.size < 50:
        return None
    values, counts = _unique_counts(x)
    if values.size < 3:
        return None
    xmins = np.unique(np.quantile(x, np.linspace(0.0, 0.9, candidates), method="lower"))
    best: ZipfFit | None = None
    for xmin in xmins.astype(int):
        if (values >= xmin).sum() < 3:
            continue
        alpha = zipf_mle(values, counts, int(xmin))
        ks = _zipf_ks(values, counts, int(xmin), alpha)
        if best is None or ks < best.ks:
            share = float(counts[values >= xmin].sum() / counts.sum())
            best = ZipfFit(exponent=alpha, xmin=int(xmin), tail_share=share, ks=ks)
    return best


def fit_lognormal(x: np.ndarray) -> LognormalFit | None:
    """Lognormal from ln(x), KS against the integer data with a half-token continuity step."""
    x = x[x >= 1]
    if x.size < 50:
        return None
    logs = np.log(x)
    mu, sigma = float(logs.mean()), float(logs.std())
    if sigma <= 0:
        return None
    values, counts = _unique_counts(x)
    empirical = np.cumsum(counts) / counts.sum()
    model = stats.norm.cdf((np.log(values + 0.5) - mu) / sigma)
    return LognormalFit(mu=mu, sigma=sigma, ks=float(np.abs(empirical - model).max()))


def bimodality_coefficient(x: np.ndarray) -> float | None:
    """Sarle's coefficient of ln(x): (skew^2 + 1) / (excess kurtosis + small-sample term);
    None for fewer than 4 values or a constant column (no shape to measure)."""
    x = x[x >= 1]
    n = x.size
    if n < 4 or x.min() == x.max():
        return None
    logs = np.log(x)
    skew = float(stats.skew(logs))
    kurt = float(stats.kurtosis(logs))
    return (skew**2 + 1) / (kurt + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3)))


def _smooth(values: np.ndarray) -> np.ndarray:
    """Gaussian smoothing over neighbouring bins (sigma one bin), edges replicated.

    A positive kernel keeps a monotone sequence monotone."""
    kernel = np.exp(-0.5 * np.arange(-3, 4) ** 2)
    kernel /= kernel.sum()
    return np.convolve(np.pad(values, 3, mode="edge"), kernel, mode="valid")


def second_mode(x: np.ndarray, *, bins: int = 40) -> float | None:
    """The location (tokens) of a second mode of ``x``, or None when there is one mode.

    The histogram is the report's: bins with edges at half-integers spaced
    evenly in ln(x), density per token, smoothed over neighbouring bins. A
    local maximum other than the highest one is a second mode when the lowest
    density between the two lies at least :data:`MODE_DIP` below the smaller
    peak and :data:`MODE_DIP_SE` Poisson standard errors below it, and the
    smaller peak's side of that dip holds :data:`MODE_MASS` of the data. A
    non-increasing histogram has no such maximum: averages of a non-increasing
    sequence over consecutive blocks of integers do not increase, and smoothing
    with a positive kernel keeps that.
    """
    x = np.round(x[x >= 1])
    if x.size < 50:
        return None
    top = float(x.max())
    edges = np.unique(np.round(np.geomspace(1.0, top + 1.0, bins + 1))) - 0.5
    if edges.size < 4:
        return None
    counts = np.histogram(x, bins=edges)[0].astype(np.float64)
    width = np.diff(edges)
    smooth = _smooth(counts)
    density = smooth / width
    se = np.sqrt(np.maximum(smooth, 1.0)) / width
    inner = np.arange(1, density.size - 1)
    is_peak = np.r_[
        density[0] > density[1],
        (density[inner] > density[inner - 1]) & (density[inner] >= density[inner + 1]),
        density[-1] > density[-2],
    ]
    peaks = np.flatnonzero(is_peak)
    main = int(np.argmax(density))
    total = counts.sum()
    best: tuple[float, float] | None = None
    for p in peaks[peaks != main]:
        lo, hi = sorted((int(p), main))
        valley = lo + int(np.argmin(density[lo : hi + 1]))
        drop = density[p] - density[valley]
        mass = counts[valley + 1 :].sum() if p > main else counts[:valley].sum()
        if (
            drop >= MODE_DIP * density[p]
            and drop >= MODE_DIP_SE * np.hypot(se[p], se[valley])
            and mass >= MODE_MASS * total
            and (best is None or mass > best[0])
        ):
            best = (float(mass), float(np.sqrt(edges[p] * edges[p + 1])))
    return None if best is None else best[1]


def length_fit(x: np.ndarray) -> LengthFit:
    """All the length statistics of one column of one class."""
    zipf, lognormal = fit_zipf(x), fit_lognormal(x)
    fits = [(f.ks, name) for name, f in (("zipf", zipf), ("lognormal", lognormal)) if f]
    ks, name = min(fits) if fits else (1.0, "empirical")
    bc = bimodality_coefficient(x)
    mode = second_mode(x) if bc is not None and bc > BIMODAL_COEFFICIENT else None
    return LengthFit(
        count=int(x.size),
        mean=float(x.mean()) if x.size else 0.0,
        p50=float(np.quantile(x, 0.5)) if x.size else 0.0,
        p99=float(np.quantile(x, 0.99)) if x.size else 0.0,
        zipf=zipf,
        lognormal=lognormal,
        best=name if ks <= GOOD_FIT_KS else "empirical",
        bimodality_coefficient=bc,
        second_mode=mode,
        bimodal=mode is not None,
    )


def relation(inp: np.ndarray, out: np.ndarray, *, bins: int = 20) -> Relation:
    """Least squares of output on input, and the output's median, mean and 5th-95th
    percentiles in log-spaced input bins (inputs below 1 token share the first bin)."""
    x, y = inp.astype(np.float64), out.astype(np.float64)
    if x.size == 0:
        raise ValueError("relation needs at least one request")
    dx = x - x.mean()
    sxx = float((dx**2).sum())
    slope = float((dx * (y - y.mean())).sum() / sxx) if sxx > 0 else 0.0
    intercept = float(y.mean() - slope * x.mean())
    residual = y - (slope * x + intercept)
    total = ((y - y.mean()) ** 2).sum()
    r2 = 1.0 - (residual**2).sum() / total if total > 0 and sxx > 0 else 0.0
    lo, hi = max(float(x.min()), 1.0), max(float(x.max()), 1.0)
    if hi > lo:
        edges = np.unique(np.geomspace(lo, hi, bins + 1))
        which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, edges.size - 2)
        centres = np.sqrt(edges[:-1] * edges[1:])
    else:  # one input length: one bin at it
        which, centres = np.zeros(x.size, dtype=np.int64), np.array([lo])
    per = (
        pl.DataFrame({"b": which, "y": y})
        .group_by("b")
        .agg(
            median=pl.col("y").median(),
            mean=pl.col("y").mean(),
            p5=pl.col("y").quantile(0.05, "linear"),
            p95=pl.col("y").quantile(0.95, "linear"),
            n=pl.len(),
        )
        .sort("b")
    )
    return Relation(
        slope=slope,
        intercept=intercept,
        r_squared=float(r2),
        bin_input=[float(c) for c in centres[per["b"].to_numpy()]],
        bin_median_output=per["median"].to_list(),
        bin_mean_output=per["mean"].to_list(),
        bin_p5_output=per["p5"].to_list(),
        bin_p95_output=per["p95"].to_list(),
        bin_count=per["n"].to_list(),
    )


class ClassLengths(BaseModel):
    """Lengths of one model x log type class."""

    model_config = ConfigDict(extra="forbid")

    model: str | None
    log_type: str | None
    request: LengthFit
    response: LengthFit
    relation: Relation | None


def lengths(table: pl.DataFrame) -> list[ClassLengths]:
    """Fits per model x log type; responses of failed requests (0 tokens) are left out."""
    out = []
    keys = table.select("model", "log_type").unique().sort(["model", "log_type"], nulls_last=True)
    for model, log_type in keys.iter_rows():
        part = table.filter(
            pl.col("model").eq_missing(model) & pl.col("log_type").eq_missing(log_type)
        )
        ok = part.filter(~pl.col("failed") & (pl.col("output_tokens") > 0))
        inp = part["input_tokens"].to_numpy()
        ok_in, ok_out = ok["input_tokens"].to_numpy(), ok["output_tokens"].to_numpy()
        out.append(
            ClassLengths(
                model=None if model is None else str(model),
                log_type=None if log_type is None else str(log_type),
                request=length_fit(inp),
                response=length_fit(ok_out),
                relation=relation(ok_in, ok_out) if ok.height >= 3 else None,
            )
        )
    return out
