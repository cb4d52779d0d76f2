"""Request and response lengths: fitted distributions, bimodality, and their relation.

Token counts are positive integers. Three candidate models are compared by the
Kolmogorov-Smirnov distance to the data: a discrete power law (Zipf) above a
fitted ``xmin`` (maximum likelihood with the Hurwitz zeta normaliser, xmin
chosen by minimum KS as in Clauset, Shalizi and Newman 2009), a lognormal
(moments of ln x), and the empirical distribution itself (always KS 0, named
best only when neither parametric model comes within 0.05).
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
    bimodal: bool


class Relation(BaseModel):
    """Least-squares line ``output = slope * input + intercept`` and binned medians."""

    model_config = ConfigDict(extra="forbid")

    slope: float
    intercept: float
    r_squared: float
    bin_input: list[float]
    bin_median_output: list[float]


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
    """Sarle's coefficient of ln(x): (skew^2 + 1) / (excess kurtosis + small-sample term)."""
    x = x[x >= 1]
    n = x.size
    if n < 4:
        return None
    logs = np.log(x)
    skew = float(stats.skew(logs))
    kurt = float(stats.kurtosis(logs))
    return (skew**2 + 1) / (kurt + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3)))


def length_fit(x: np.ndarray) -> LengthFit:
    """All the length statistics of one column of one class."""
    zipf, lognormal = fit_zipf(x), fit_lognormal(x)
    fits = [(f.ks, name) for name, f in (("zipf", zipf), ("lognormal", lognormal)) if f]
    ks, name = min(fits) if fits else (1.0, "empirical")
    bc = bimodality_coefficient(x)
    return LengthFit(
        count=int(x.size),
        mean=float(x.mean()) if x.size else 0.0,
        p50=float(np.quantile(x, 0.5)) if x.size else 0.0,
        p99=float(np.quantile(x, 0.99)) if x.size else 0.0,
        zipf=zipf,
        lognormal=lognormal,
        best=name if ks <= GOOD_FIT_KS else "empirical",
        bimodality_coefficient=bc,
        bimodal=bc is not None and bc > BIMODAL_COEFFICIENT,
    )


def relation(inp: np.ndarray, out: np.ndarray, *, bins: int = 20) -> Relation:
    """Least squares of output on input, and the median output in log-spaced input bins."""
    x, y = inp.astype(np.float64), out.astype(np.float64)
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    total = ((y - y.mean()) ** 2).sum()
    r2 = 1.0 - (residual**2).sum() / total if total > 0 else 0.0
    edges = np.unique(np.geomspace(max(x.min(), 1.0), max(x.max(), 2.0), bins + 1))
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, edges.size - 2)
    medians = pl.DataFrame({"b": which, "y": y}).group_by("b").agg(pl.col("y").median()).sort("b")
    centres = np.sqrt(edges[:-1] * edges[1:])
    return Relation(
        slope=float(slope),
        intercept=float(intercept),
        r_squared=float(r2),
        bin_input=[float(centres[b]) for b in medians["b"].to_list()],
        bin_median_output=medians["y"].to_list(),
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
