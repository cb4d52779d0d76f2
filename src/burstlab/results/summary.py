"""A run's summary: every metric of the metric table, failures, lag and the client-bound verdict.

For result tables of benchmark runs and simulations alike (see
:mod:`burstlab.results.records`). The summary is a typed, versioned
:class:`RunSummary`, saved as ``summary.json`` by :class:`~burstlab.results.rundir.RunDir`.

Latency percentiles cover ``ok`` requests only (as vLLM, AIPerf and GuideLLM
do, so numbers compare), and always sit beside the failure counts; the
``attempt_s`` distribution covers every attempt, and its high percentiles are
marked censored when failures are too common for successes to speak for them
(RELIABILITY.md 2.4). Latencies come twice: from ``sent`` (the server's view)
and from ``intended`` (the user's view, free of coordinated omission).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from burstlab.results.bursts import BurstView
from burstlab.results.metrics import (
    LATENCY,
    PERCENTILES,
    Distribution,
    distribution,
    metric_values,
)
from burstlab.results.slo import SLO

#: The summary format this burstlab writes. Version 1 (burstlab 0.x before the
#: results layer) had no ``version`` key and a ``vllm`` block; it is read and upgraded.
#: Version 3 added ``engine.utilisation`` and ``token_times``; a version-2 summary
#: reads as it is (no utilisation; token times were always kept then).
#: Version 4 added ``client_by_node`` (Ray runs); a version-3 summary reads as it is.
SUMMARY_VERSION = 4
#: Client-bound thresholds (RELIABILITY.md 2.2), seconds.
LAG_P99_LIMIT_S = 0.010
LAG_MAX_LIMIT_S = 0.100
LOOP_LAG_LIMIT_S = 0.020

Status = Literal["complete", "interrupted"]
#: Why an interrupted run stopped: a signal (Ctrl-C, ``kill``), or the records could not
#: be written (the disk filled, or another write error).
StoppedBy = Literal["sigint", "sigterm", "disk_full", "write_error"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Counts(_Model):
    """Requests by outcome; ``scheduled`` is the sum."""

    ok: int
    failed: int
    cancelled: int
    not_sent: int
    scheduled: int


class Throughput(_Model):
    """Completed work per second of the measured window (first send to last end)."""

    requests_per_s: float
    output_tokens_per_s: float
    total_tokens_per_s: float


class Attempts(Distribution):
    """Seconds from send to end of every attempt, failed ones included; ``censored``
    names the percentiles that failures are too common to let successes decide."""

    censored: list[str] = Field(default_factory=list)


class Lengths(_Model):
    """Token totals over ``ok`` requests, requested and achieved."""

    input_requested: int
    input_achieved: int
    output_requested: int
    output_achieved: int
    output_mismatched_requests: int
    input_mismatched_requests: int


class FailuresOverTime(_Model):
    """Outcomes per window of intended time: ``windows[start_s][kind] = requests``."""

    window_s: float
    windows: dict[str, dict[str, int]]


class ClientVerdict(_Model):
    """Whether the numbers measure the client rather than the server, and why."""

    bound: bool
    reasons: list[str]
    loop_lag_max_s: float
    cpu_share_max: float


class Goodput(_Model):
    """Requests meeting every SLO, in all and per second, from send and from intended time."""

    good_requests: int
    requests_per_s: float
    good_requests_intended: int
    requests_per_s_intended: float


class Peak(_Model):
    """The highest time bin of a utilisation series: its share (0-1), the bin's start
    (simulated seconds, the workload's time axis) and its replica (``None`` for one
    engine)."""

    value: float
    start_s: float
    replica: int | None = None


class ReplicaUtilisation(_Model):
    """One replica's utilisation over the whole window (shares 0-1, as
    :class:`UtilisationStats`)."""

    replica: int
    busy_share: float
    mfu: float | None = None
    mbu: float | None = None


class UtilisationStats(_Model):
    """How busy the simulated GPUs were, from the cost model (shares 0-1).

    ``busy_share``: the share of the window a replica spent running iterations.
    ``mfu`` (model FLOPs utilisation): the FLOPs the cost model says the iterations
    performed, over the datasheet's peak dense FLOP/s times the window; ``mbu``
    (memory-bandwidth utilisation): HBM bytes moved (weights and KV cache) over the
    peak bandwidth times the window. Both are per GPU, which is also per replica:
    its ``tp`` GPUs do equal shares in lock step. ``*_when_busy`` divide by the busy
    time instead of the window: how well the iterations themselves use the GPU.
    MFU and MBU are ``None`` when the cost model has no datasheet (``linear``) or
    the engine reported no per-iteration load: ``basis`` is then ``busy_only``.

    The window runs from the first iteration's start to the last one's end
    (``window_s`` seconds); with several replicas the figures are means over
    the replicas that ran an iteration (one not yet launched, or stopped, counts as
    idle then), each one's are in ``replicas``, and a peak is the highest bin of
    any replica.
    ``bin_s`` is the width of the time series' bins (``utilisation.parquet``).
    """

    basis: Literal["roofline", "busy_only"]
    window_s: float
    bin_s: float
    busy_share: float
    mfu: float | None = None
    mbu: float | None = None
    mfu_when_busy: float | None = None
    mbu_when_busy: float | None = None
    peak_busy_share: Peak
    peak_mfu: Peak | None = None
    peak_mbu: Peak | None = None
    replicas: list[ReplicaUtilisation] = Field(default_factory=list)


class EngineStats(_Model):
    """What the simulated engine did: iterations, scheduler steps, preemptions, wall
    time (s), and GPU utilisation (``None`` when it ran no iteration)."""

    iterations: int
    steps: int
    preemptions: int
    wall_s: float
    utilisation: UtilisationStats | None = None


class RunSummary(_Model):
    """Everything a run measured, in seconds unless a name says otherwise."""

    version: int = SUMMARY_VERSION
    status: Status
    stopped_by: StoppedBy | None = None
    lost: int = 0
    counts: Counts
    failures_by_kind: dict[str, int]
    failures_by_subkind: dict[str, int]
    failure_rate: float
    duration_s: float
    offered_rate_rps: float | None
    throughput: Throughput
    metrics: dict[str, Distribution]
    jitter_s: float | None
    attempt_s: Attempts
    schedule_lag_s: Distribution
    conn_queued_max_s: float
    lengths: Lengths
    failures_over_time: FailuresOverTime
    client: ClientVerdict
    #: The same verdict for each Ray node's share of the run (its requests' lag, its
    #: actors' health), by node; None when the run did not use Ray.
    client_by_node: dict[str, ClientVerdict] | None = None
    slo: SLO | None = None
    goodput: Goodput | None = None
    burst: BurstView | None = None
    engine: EngineStats | None = None
    #: Whether every token's time was kept, so ``itl_s`` is exact (bench: its chunks;
    #: simulate: only with ``--token-times``). False: ``itl_s`` is empty, and TPOT and
    #: each request's largest gap between tokens (``requests.parquet``) stand for it.
    token_times: bool = True


def upgrade_summary(data: dict[str, Any]) -> dict[str, Any]:
    """A saved summary of an older version in this version's shape (version 1: the
    vLLM names moved to ``vllm.json``)."""
    out = dict(data)
    if out.get("version") is None:
        out.pop("vllm", None)
        out["version"] = SUMMARY_VERSION
        out.setdefault("status", "complete")
    return out


def summarize(
    table: pl.DataFrame,
    *,
    status: Status = "complete",
    stopped_by: StoppedBy | None = None,
    lost: int = 0,
    slo: SLO | None = None,
    health: list[dict[str, Any]] | None = None,
    max_concurrency: int | None = None,
    window_s: float | None = None,
    burst: BurstView | None = None,
    engine: EngineStats | None = None,
) -> RunSummary:
    """The summary of a result table (from :func:`burstlab.results.records.load_records`)."""
    outcome = table["outcome"]
    ok = table.filter(outcome == "ok")
    counts = Counts(
        **{k: int((outcome == k).sum()) for k in ("ok", "failed", "cancelled", "not_sent")},
        scheduled=table.height,
    )
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
    span = float(np.ptp(table["arrival_s"].to_numpy())) if table.height > 1 else 0.0

    out_tokens = int(ok["output_tokens_achieved"].fill_null(0).sum())
    in_tokens = int(ok["input_tokens_achieved"].fill_null(ok["input_tokens"]).sum())
    metrics = {name: distribution(metric_values(ok, name)) for name in LATENCY}
    tpot = metric_values(ok, "tpot_s")

    attempted = table.filter(pl.col("sent_s").is_not_null())
    attempt = Attempts(**distribution(_attempt_seconds(attempted)).model_dump())
    share_failed = counts.failed / max(attempted.height, 1)
    attempt.censored = [f"p{p}" for p in PERCENTILES if share_failed > (100 - p) / 100 + 1e-12]

    lag = distribution(
        metric_values(table.filter(pl.col("dispatched_s").is_not_null()), "schedule_lag_s")
    )
    queued = float(table["conn_queued_s"].fill_null(0).max() or 0.0)  # type: ignore[arg-type]
    lengths = Lengths(
        input_requested=int(ok["input_tokens"].sum()),
        input_achieved=in_tokens,
        output_requested=int(ok["output_tokens"].sum()),
        output_achieved=out_tokens,
        output_mismatched_requests=int((ok["output_tokens_achieved"] != _asked(ok)).sum()),
        input_mismatched_requests=int(
            (
                ok["input_tokens_achieved"].is_not_null()
                & (ok["input_tokens_achieved"] != ok["input_tokens"])
            ).sum()
        ),
    )
    return RunSummary(
        status=status,
        stopped_by=stopped_by,
        lost=lost,
        counts=counts,
        failures_by_kind=by_kind,
        failures_by_subkind=by_sub,
        failure_rate=counts.failed / max(table.height, 1),
        duration_s=duration,
        offered_rate_rps=(table.height - 1) / span if span > 0 else None,
        throughput=Throughput(
            requests_per_s=counts.ok / duration,
            output_tokens_per_s=out_tokens / duration,
            total_tokens_per_s=(in_tokens + out_tokens) / duration,
        ),
        metrics=metrics,
        jitter_s=float(np.nanstd(tpot)) if np.isfinite(tpot).any() else None,
        attempt_s=attempt,
        schedule_lag_s=lag,
        conn_queued_max_s=queued,
        lengths=lengths,
        failures_over_time=_failures_over_time(table, window_s),
        client=_verdict(lag, health or [], queued, max_concurrency),
        client_by_node=_verdict_by_node(table, health or [], max_concurrency),
        slo=slo,
        goodput=_goodput(ok, slo, duration) if slo is not None else None,
        burst=burst,
        engine=engine,
    )


def _attempt_seconds(attempted: pl.DataFrame) -> np.ndarray:
    seconds = attempted.select(pl.col("end_s") - pl.col("sent_s")).to_series()
    return seconds.cast(pl.Float64).fill_null(float("nan")).to_numpy()


def _goodput(ok: pl.DataFrame, slo: SLO, duration: float) -> Goodput:
    from_sent = int(ok.select(slo.met().sum()).item())
    from_intended = int(ok.select(slo.met(intended=True).sum()).item())
    return Goodput(
        good_requests=from_sent,
        requests_per_s=from_sent / duration,
        good_requests_intended=from_intended,
        requests_per_s_intended=from_intended / duration,
    )


def _asked(ok: pl.DataFrame) -> pl.Series:
    """Output tokens asked of the server: the requested length, or bench's
    ``--max-output-tokens`` cap where it is lower."""
    if "output_tokens_cap" not in ok.columns:
        return ok["output_tokens"]
    return ok.select(pl.min_horizontal("output_tokens", "output_tokens_cap")).to_series()


def _failures_over_time(table: pl.DataFrame, window_s: float | None) -> FailuresOverTime:
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
    return FailuresOverTime(window_s=width, windows=windows)


def _verdict_by_node(
    table: pl.DataFrame, health: list[dict[str, Any]], max_concurrency: int | None
) -> dict[str, ClientVerdict] | None:
    """The client-bound verdict of each node's requests and actors (health readings
    carry their ``node``); None when no record names a node."""
    if "node" not in table.columns or table["node"].null_count() == table.height:
        return None
    out: dict[str, ClientVerdict] = {}
    for node in sorted({str(n) for n in table["node"].drop_nulls().unique()}):
        rows = table.filter(pl.col("node") == node)
        lag = distribution(
            metric_values(rows.filter(pl.col("dispatched_s").is_not_null()), "schedule_lag_s")
        )
        queued = float(rows["conn_queued_s"].fill_null(0).max() or 0.0)  # type: ignore[arg-type]
        mine = [h for h in health if h.get("node") == node]
        out[node] = _verdict(lag, mine, queued, max_concurrency)
    return out


def _verdict(
    lag: Distribution,
    health: list[dict[str, Any]],
    queued: float,
    max_concurrency: int | None,
) -> ClientVerdict:
    reasons: list[str] = []
    lag_p99, lag_max = lag.p99 or 0.0, lag.max or 0.0
    if lag_p99 > LAG_P99_LIMIT_S:
        reasons.append(f"schedule lag p99 {lag_p99 * 1e3:.1f} ms > 10 ms")
    if lag_max > LAG_MAX_LIMIT_S:
        reasons.append(f"a request was sent {lag_max * 1e3:.0f} ms late (> 100 ms)")
    loop_lag = max((h.get("loop_lag_max_s", 0.0) for h in health), default=0.0)
    if loop_lag > LOOP_LAG_LIMIT_S:
        reasons.append(f"event loop ran {loop_lag * 1e3:.0f} ms late (> 20 ms)")
    if any(h.get("cpu_saturated") for h in health):
        reasons.append("client process CPU at or above 90% of a core for 2 s or more")
    if queued > 0 and not max_concurrency:
        reasons.append("requests waited for a pooled connection with no concurrency cap")
    if max_concurrency and lag_p99 > LAG_P99_LIMIT_S:
        reasons.append(f"--max-concurrency {max_concurrency} held requests back (intended)")
    return ClientVerdict(
        bound=bool(reasons),
        reasons=reasons,
        loop_lag_max_s=loop_lag,
        cpu_share_max=max((h.get("cpu_share_max", 0.0) for h in health), default=0.0),
    )
