"""The source's own end-to-end time (BurstGPT v3 ``Elapsed time``) against tokens, per model.

``elapsed_s`` is what the traced service measured, never burstlab. Per model,
over requests that succeeded with at least one response token and a known
elapsed time, two least-squares lines are fitted:
``elapsed = a + b * output_tokens`` and ``elapsed = a + b * output_tokens + c *
input_tokens``. ``b`` is the marginal seconds per output token (the decode
time per token the service showed), ``a`` the fixed cost, ``c`` the cost per
prompt token. The fits use sums over centred columns (normal equations), so a
10M-row table needs no design matrix. BurstGPT records whole seconds, so
``elapsed`` is quantised to 1 s; the fits are unbiased by that rounding but R²
is lower than the service's true one.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from burstlab.analyze.calendar import Quantiles, quantiles


class ElapsedLine(BaseModel):
    """``elapsed_s = intercept_s + per_output_token_s * output_tokens
    [+ per_input_token_s * input_tokens]`` by least squares, with its R²."""

    model_config = ConfigDict(extra="forbid")

    intercept_s: float
    per_output_token_s: float
    per_input_token_s: float | None
    r_squared: float


class ModelElapsed(BaseModel):
    """One model's elapsed times: ``requests`` fitted, the distribution of ``elapsed_s``
    and of seconds per output token (elapsed / output tokens per request), and both lines
    (``with_input`` null when the input column is constant or collinear)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None
    requests: int
    elapsed_s: Quantiles
    seconds_per_output_token: Quantiles
    output_only: ElapsedLine | None
    with_input: ElapsedLine | None


class Elapsed(BaseModel):
    """Elapsed-time analysis per model; ``left_out`` rows had an elapsed time but failed or
    had no response tokens."""

    model_config = ConfigDict(extra="forbid")

    models: list[ModelElapsed]
    left_out: int


def fit_line(part: pl.DataFrame, columns: list[str]) -> ElapsedLine | None:
    """Least squares of ``elapsed_s`` on ``columns`` (``output_tokens`` first, then
    optionally ``input_tokens``) with an intercept; None when the columns are constant or
    collinear, or fewer rows than coefficients."""
    k = len(columns)
    if part.height <= k:
        return None
    names = [*columns, "elapsed_s"]
    means = part.select(pl.col(c).cast(pl.Float64).mean() for c in names).row(0)
    centred = [pl.col(c).cast(pl.Float64) - m for c, m in zip(names, means, strict=True)]
    pairs = [(i, j) for i in range(k + 1) for j in range(i, k + 1)]
    sums = part.select((centred[i] * centred[j]).sum().alias(f"{i}_{j}") for i, j in pairs).row(0)
    s = np.zeros((k + 1, k + 1))
    for (i, j), v in zip(pairs, sums, strict=True):
        s[i, j] = s[j, i] = v
    sxx, sxy, syy = s[:k, :k], s[:k, k], s[k, k]
    scale = np.sqrt(np.diag(sxx))
    if np.any(scale <= 0) or np.linalg.cond(sxx / np.outer(scale, scale)) > 1e10:
        return None
    beta = np.linalg.solve(sxx, sxy)
    intercept = means[k] - float(beta @ np.asarray(means[:k]))
    sse = syy - float(beta @ sxy)
    return ElapsedLine(
        intercept_s=float(intercept),
        per_output_token_s=float(beta[0]),
        per_input_token_s=float(beta[1]) if k > 1 else None,
        r_squared=float(1.0 - sse / syy) if syy > 0 else 0.0,
    )


def elapsed(table: pl.DataFrame) -> Elapsed | None:
    """Per-model fits of ``elapsed_s``; None when the table has no elapsed times."""
    if "elapsed_s" not in table.columns:
        return None
    known = table.filter(pl.col("elapsed_s").is_not_null() & pl.col("elapsed_s").is_finite())
    if known.height == 0:
        return None
    ok = known.filter(~pl.col("failed") & (pl.col("output_tokens") > 0))
    models = []
    for (model,), part in sorted(
        ok.group_by("model"), key=lambda kv: (kv[0][0] is None, str(kv[0][0]))
    ):
        e = part["elapsed_s"].to_numpy()
        per_token = e / part["output_tokens"].to_numpy()
        e_q, t_q = quantiles(e), quantiles(per_token)
        if e_q is None or t_q is None:
            continue
        models.append(
            ModelElapsed(
                model=None if model is None else str(model),
                requests=part.height,
                elapsed_s=e_q,
                seconds_per_output_token=t_q,
                output_only=fit_line(part, ["output_tokens"]),
                with_input=fit_line(part, ["output_tokens", "input_tokens"]),
            )
        )
    return Elapsed(models=models, left_out=known.height - ok.height)
