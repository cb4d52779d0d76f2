"""The one metric table and the one percentile: every latency figure of a run comes from here.

A metric is a polars expression over a result table's timestamps (DESIGN.md
"Metrics"), with its unit, its label and its name in ``vllm bench serve``. The
records reader adds every metric as a column with :func:`derive`; the summary,
the report, the simulator's studies and autoscaling read those columns, so a
metric is defined once and a new one is one row here.

Percentiles are linear interpolation between order statistics (Hyndman and
Fan's type 7: numpy's default ``"linear"``, polars' ``"linear"``, and what
``vllm bench serve`` reports), through :func:`percentile` on arrays and
:func:`quantile` in polars expressions, which agree exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

#: The percentile method, in numpy's and polars' spelling.
PERCENTILE_METHOD: Literal["linear"] = "linear"
#: The percentiles every distribution in a summary reports.
PERCENTILES = (50, 90, 95, 99)

_INTENDED = pl.col("arrival_s")
_DISPATCHED = pl.col("dispatched_s")
_SENT = pl.col("sent_s")
_FIRST = pl.col("first_s")
_END = pl.col("end_s")
_TOKENS = pl.col("output_tokens_achieved")


@dataclass(frozen=True, slots=True)
class Metric:
    """One per-request metric: ``expr`` computes it from a result table's columns.

    ``per_token`` metrics are lists (one value per gap between chunks) and are
    pooled over requests before their distribution is taken.
    """

    name: str
    expr: pl.Expr
    unit: str
    label: str
    definition: str
    vllm: str | None = None
    per_token: bool = False


#: Every metric, in the order summaries and reports list them.
METRICS: tuple[Metric, ...] = (
    Metric("ttft_s", _FIRST - _SENT, "s", "TTFT", "first - sent", vllm="ttft"),
    Metric(
        "tpot_s",
        pl.when(_TOKENS > 1).then((_END - _FIRST) / (_TOKENS - 1)).otherwise(None),
        "s",
        "TPOT",
        "(end - first) / (output tokens - 1), requests with more than one token",
        vllm="tpot",
    ),
    Metric(
        "itl_s",
        pl.col("chunk_s").list.diff(null_behavior="drop"),
        "s",
        "ITL",
        "gaps between consecutive token-carrying chunks",
        vllm="itl",
        per_token=True,
    ),
    Metric("e2e_s", _END - _SENT, "s", "E2E", "end - sent", vllm="e2el"),
    Metric("ttft_intended_s", _FIRST - _INTENDED, "s", "TTFT from intended", "first - intended"),
    Metric("e2e_intended_s", _END - _INTENDED, "s", "E2E from intended", "end - intended"),
    Metric("schedule_lag_s", _DISPATCHED - _INTENDED, "s", "schedule lag", "dispatched - intended"),
)
BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
#: The latency metrics a summary gives over ``ok`` requests (schedule lag covers every send).
LATENCY: tuple[str, ...] = tuple(m.name for m in METRICS if m.name != "schedule_lag_s")


def derive(table: pl.DataFrame) -> pl.DataFrame:
    """``table`` with every metric of :data:`METRICS` added as a column (seconds)."""
    return table.with_columns(m.expr.alias(m.name) for m in METRICS)


def timing_table(
    arrival_s: np.ndarray,
    first_s: np.ndarray,
    end_s: np.ndarray,
    ok: np.ndarray,
    output_tokens: np.ndarray,
) -> pl.DataFrame:
    """The metric columns of requests sent exactly at their intended times (a
    simulation's perfect client), from plain arrays: for studies that need a
    run's metrics without writing records."""
    frame = pl.DataFrame(
        {
            "arrival_s": arrival_s,
            "dispatched_s": arrival_s,
            "sent_s": arrival_s,
            "first_s": first_s,
            "end_s": end_s,
            "outcome": np.where(ok, "ok", "failed"),
            "output_tokens_achieved": output_tokens,
        },
        nan_to_null=True,
    )
    return derive(frame.with_columns(pl.lit(None, dtype=pl.List(pl.Float64)).alias("chunk_s")))


def percentile(values: np.ndarray | pl.Series | Iterable[float], p: float) -> float | None:
    """The ``p``-th percentile (0-100) of the finite ``values`` by :data:`PERCENTILE_METHOD`;
    None when there are none."""
    v = np.asarray(values.to_numpy() if isinstance(values, pl.Series) else values, dtype=float)
    v = v[np.isfinite(v)]
    return float(np.percentile(v, p, method=PERCENTILE_METHOD)) if v.size else None


def quantile(expr: pl.Expr, p: float) -> pl.Expr:
    """The ``p``-th percentile (0-100) of ``expr`` in a polars aggregation, by the
    same method as :func:`percentile`."""
    return expr.quantile(p / 100, PERCENTILE_METHOD)


class Distribution(BaseModel):
    """count, mean, standard deviation, percentiles and maximum of a metric (its unit)."""

    model_config = ConfigDict(extra="forbid")

    count: int
    mean: float | None = None
    std: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None

    def at(self, p: int) -> float | None:
        """The ``p``-th percentile, one of :data:`PERCENTILES`."""
        value: float | None = getattr(self, f"p{p}")
        return value


def distribution(values: np.ndarray | pl.Series) -> Distribution:
    """The :class:`Distribution` of the finite ``values``."""
    v = np.asarray(values.to_numpy() if isinstance(values, pl.Series) else values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return Distribution(count=0)
    q = np.percentile(v, PERCENTILES, method=PERCENTILE_METHOD)
    return Distribution(
        count=int(v.size),
        mean=float(v.mean()),
        std=float(v.std()),
        max=float(v.max()),
        **{f"p{p}": float(x) for p, x in zip(PERCENTILES, q, strict=True)},
    )


def metric_values(table: pl.DataFrame, name: str) -> np.ndarray:
    """The values of metric ``name`` in ``table`` (a :func:`derive`-d table) as a
    float array, NaN where undefined; per-token metrics pooled over requests."""
    column = table[name]
    if BY_NAME[name].per_token:
        column = column.explode()
    return column.cast(pl.Float64).fill_null(float("nan")).to_numpy()
