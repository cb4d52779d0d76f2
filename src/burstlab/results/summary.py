"""A run's summary: every DESIGN.md metric, failures, lag and the client-bound verdict.

For result tables of benchmark runs and simulations alike (see
:mod:`burstlab.results.records`).

Latency percentiles cover ``ok`` requests only (as vLLM, AIPerf and GuideLLM
do, so numbers compare), and always sit beside the failure counts; the
``attempt_s`` distribution covers every attempt, and its high percentiles are
marked censored when failures are too common for successes to speak for them
(RELIABILITY.md 2.4). Latencies come twice: from ``sent`` (the server's view)
and from ``intended`` (the user's view, free of coordinated omission).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from burstlab.core.errors import InputError

PERCENTILES = (50, 90, 95, 99)
#: Client-bound thresholds (RELIABILITY.md 2.2), seconds.
LAG_P99_LIMIT_S = 0.010
LAG_MAX_LIMIT_S = 0.100
LOOP_LAG_LIMIT_S = 0.020


class SLO(BaseModel):
    """Service-level objectives in seconds; ``None`` leaves one out."""

    model_config = ConfigDict(extra="forbid")

    ttft: float | None = None
    tpot: float | None = None
    e2e: float | None = None


def parse_slo(text: str) -> SLO:
    """``"ttft=0.5,tpot=0.05,e2e=10"`` (seconds) as an :class:`SLO`."""
    values: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in SLO.model_fields:
            raise InputError(
                f"{part!r} is not KEY=SECONDS with KEY one of ttft, tpot, e2e", field="--slo"
            )
        try:
            number = float(value)
        except ValueError:
            raise InputError(f"{value!r} is not a number of seconds", field="--slo") from None
        if not math.isfinite(number) or number <= 0:
            raise InputError(f"{key} must be a positive number of seconds", field="--slo")
        values[key.strip()] = number
    return SLO(**values)


def stats(values: np.ndarray) -> dict[str, float | int | None]:
    """count, mean, std, p50, p90, p95, p99 and max of ``values`` (NaNs dropped)."""
    v = values[np.isfinite(values)]
    out: dict[str, float | int | None] = {"count": int(v.size)}
    if v.size == 0:
        return out | dict.fromkeys(("mean", "std", "max", *(f"p{p}" for p in PERCENTILES)))
    q = np.percentile(v, PERCENTILES)
    out |= {"mean": float(v.mean()), "std": float(v.std())}
    out |= {f"p{p}": float(x) for p, x in zip(PERCENTILES, q, strict=True)}
    out["max"] = float(v.max())
    return out


def _col(frame: pl.DataFrame, name: str) -> np.ndarray:
    return frame[name].cast(pl.Float64).fill_null(float("nan")).to_numpy()


def summarize(
    table: pl.DataFrame,
    *,
    slo: SLO | None = None,
    health: list[dict[str, Any]] | None = None,
    max_concurrency: int | None = None,
    window_s: float | None = None,
) -> dict[str, Any]:
    """The summary of a result table (from :func:`burstlab.results.records.load_records`)."""
    outcome = table["outcome"]
    ok = table.filter(outcome == "ok")
    counts = {k: int((outcome == k).sum()) for k in ("ok", "failed", "cancelled", "not_sent")}
    counts["scheduled"] = table.height
    failed = table.filter(outcome == "failed")
    by_kind = dict(failed.group_by("error_kind").len().sort("error_kind").iter_rows())
    by_sub = dict(
        failed.select(
            pl.concat_str("error_kind", "error_subkind", separator=".", ignore_nulls=True)
        )
        .to_series()
        .value_counts()
        .sort("error_kind")
        .iter_rows()
    )

    sent = table["sent_s"].drop_nulls()
    ends = table["end_s"].drop_nulls()
    start = float(sent.min()) if sent.len() else 0.0  # type: ignore[arg-type]
    stop = float(ends.max()) if ends.len() else start  # type: ignore[arg-type]
    duration = max(stop - start, 1e-9)
    arrivals = table["arrival_s"]
    span = float(np.ptp(arrivals.to_numpy())) if table.height > 1 else 0.0

    out_tokens = int(ok["output_tokens_achieved"].fill_null(0).sum())
    in_tokens = int(ok["input_tokens_achieved"].fill_null(ok["input_tokens"]).sum())
    tpot = _col(ok, "tpot_s")
    itl = _itl(ok)
    metrics = {
        "ttft_s": stats(_col(ok, "ttft_s")),
        "tpot_s": stats(tpot),
        "itl_s": stats(itl),
        "e2e_s": stats(_col(ok, "e2e_s")),
        "ttft_intended_s": stats(_col(ok, "ttft_intended_s")),
        "e2e_intended_s": stats(_col(ok, "e2e_intended_s")),
    }
    attempted = table.filter(pl.col("sent_s").is_not_null())
    attempt = stats(_col(attempted, "end_s") - _col(attempted, "sent_s"))
    share_failed = counts["failed"] / max(attempted.height, 1)
    attempt["censored"] = [f"p{p}" for p in PERCENTILES if share_failed > (100 - p) / 100 + 1e-12]  # type: ignore[assignment]

    lag = _col(table.filter(pl.col("dispatched_s").is_not_null()), "schedule_lag_s")
    lag_stats = stats(lag)
    queued = float(table["conn_queued_s"].fill_null(0).max() or 0.0)  # type: ignore[arg-type]
    verdict = _verdict(lag_stats, health or [], queued, max_concurrency)
    lengths = {
        "input_requested": int(ok["input_tokens"].sum()),
        "input_achieved": in_tokens,
        "output_requested": int(ok["output_tokens"].sum()),
        "output_achieved": out_tokens,
        "output_mismatched_requests": int(
            (ok["output_tokens_achieved"] != ok["output_tokens"]).sum()
        ),
        "input_mismatched_requests": int(
            (
                ok["input_tokens_achieved"].is_not_null()
                & (ok["input_tokens_achieved"] != ok["input_tokens"])
            ).sum()
        ),
    }
    summary: dict[str, Any] = {
        "counts": counts,
        "failures_by_kind": by_kind,
        "failures_by_subkind": by_sub,
        "failure_rate": counts["failed"] / max(table.height, 1),
        "duration_s": duration,
        "offered_rate_rps": (table.height - 1) / span if span > 0 else None,
        "throughput": {
            "requests_per_s": counts["ok"] / duration,
            "output_tokens_per_s": out_tokens / duration,
            "total_tokens_per_s": (in_tokens + out_tokens) / duration,
        },
        "metrics": metrics,
        "jitter_s": float(np.nanstd(tpot)) if np.isfinite(tpot).any() else None,
        "attempt_s": attempt,
        "schedule_lag_s": lag_stats,
        "conn_queued_max_s": queued,
        "lengths": lengths,
        "failures_over_time": _failures_over_time(table, window_s),
        "client": verdict,
    }
    if slo is not None:
        summary["slo"] = slo.model_dump()
        summary["goodput"] = _goodput(ok, slo, duration)
    summary["vllm"] = _vllm_names(summary, counts, in_tokens, out_tokens, duration)
    return summary


def _itl(ok: pl.DataFrame) -> np.ndarray:
    times = ok["chunk_s"].drop_nulls()
    if times.len() == 0:
        return np.array([])
    gaps = times.list.diff(null_behavior="drop").explode().drop_nulls()
    return gaps.cast(pl.Float64).to_numpy()


def _goodput(ok: pl.DataFrame, slo: SLO, duration: float) -> dict[str, float | int]:
    def good(ttft: str, e2e: str) -> int:
        cond = pl.lit(True)
        if slo.ttft is not None:
            cond &= pl.col(ttft) <= slo.ttft
        if slo.tpot is not None:
            cond &= pl.col("tpot_s").fill_null(0.0) <= slo.tpot
        if slo.e2e is not None:
            cond &= pl.col(e2e) <= slo.e2e
        return int(ok.select(cond.fill_null(False).sum()).item())

    from_sent = good("ttft_s", "e2e_s")
    from_intended = good("ttft_intended_s", "e2e_intended_s")
    return {
        "good_requests": from_sent,
        "requests_per_s": from_sent / duration,
        "good_requests_intended": from_intended,
        "requests_per_s_intended": from_intended / duration,
    }


def _failures_over_time(table: pl.DataFrame, window_s: float | None) -> dict[str, Any]:
    span = float(table["arrival_s"].max() or 0.0)  # type: ignore[arg-type]
    width = window_s or max(1.0, math.ceil(span / 30))
    binned = table.select(
        (pl.col("arrival_s") // width).cast(pl.Int64).alias("window"),
        pl.when(pl.col("outcome") == "failed")
        .then(pl.col("error_kind"))
        .otherwise(pl.col("outcome"))
        .alias("kind"),
    )
    pivot = binned.group_by("window", "kind").len().sort("window", "kind")
    windows: dict[str, dict[str, int]] = {}
    for w, kind, n in pivot.iter_rows():
        windows.setdefault(str(w * width), {})[str(kind)] = int(n)
    return {"window_s": width, "windows": windows}


def _verdict(
    lag: dict[str, Any],
    health: list[dict[str, Any]],
    queued: float,
    max_concurrency: int | None,
) -> dict[str, Any]:
    reasons: list[str] = []
    if (lag.get("p99") or 0.0) > LAG_P99_LIMIT_S:
        reasons.append(f"schedule lag p99 {lag['p99'] * 1e3:.1f} ms > 10 ms")
    if (lag.get("max") or 0.0) > LAG_MAX_LIMIT_S:
        reasons.append(f"a request was sent {lag['max'] * 1e3:.0f} ms late (> 100 ms)")
    loop_lag = max((h.get("loop_lag_max_s", 0.0) for h in health), default=0.0)
    if loop_lag > LOOP_LAG_LIMIT_S:
        reasons.append(f"event loop ran {loop_lag * 1e3:.0f} ms late (> 20 ms)")
    if any(h.get("cpu_saturated") for h in health):
        reasons.append("client process CPU at or above 90% of a core for 2 s or more")
    if queued > 0 and not max_concurrency:
        reasons.append("requests waited for a pooled connection with no concurrency cap")
    if max_concurrency and (lag.get("p99") or 0.0) > LAG_P99_LIMIT_S:
        reasons.append(f"--max-concurrency {max_concurrency} held requests back (intended)")
    return {
        "bound": bool(reasons),
        "reasons": reasons,
        "loop_lag_max_s": loop_lag,
        "cpu_share_max": max((h.get("cpu_share_max", 0.0) for h in health), default=0.0),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def _vllm_names(
    summary: dict[str, Any], counts: dict[str, int], in_tok: int, out_tok: int, duration: float
) -> dict[str, Any]:
    """The summary under the field names of ``vllm bench serve --save-result``
    (milliseconds, ``median`` for p50)."""
    out: dict[str, Any] = {
        "completed": counts["ok"],
        "failed": counts["failed"],
        "duration": duration,
        "total_input_tokens": in_tok,
        "total_output_tokens": out_tok,
        "request_throughput": summary["throughput"]["requests_per_s"],
        "output_throughput": summary["throughput"]["output_tokens_per_s"],
        "total_token_throughput": summary["throughput"]["total_tokens_per_s"],
    }
    if "goodput" in summary:
        out["request_goodput"] = summary["goodput"]["requests_per_s"]
    for ours, theirs in (
        ("ttft_s", "ttft"),
        ("tpot_s", "tpot"),
        ("itl_s", "itl"),
        ("e2e_s", "e2el"),
    ):
        s = summary["metrics"][ours]
        out[f"mean_{theirs}_ms"] = _ms(s.get("mean"))
        out[f"median_{theirs}_ms"] = _ms(s.get("p50"))
        out[f"std_{theirs}_ms"] = _ms(s.get("std"))
        for p in PERCENTILES:
            out[f"p{p}_{theirs}_ms"] = _ms(s.get(f"p{p}"))
    return out
