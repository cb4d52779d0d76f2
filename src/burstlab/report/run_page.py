"""What the run report's page shows, as display strings: status, target or engine,
counts, throughput, the latency table, lengths, failures with example errors, the
burst view, the autoscaling comparison and the simulated GPUs' utilisation (figures
are :mod:`run_figures`'s and :mod:`sim_figures`'s).

Every piece of text that came from the server or the workload (model names,
error texts, URLs) is passed on as it is; the template escapes it.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from burstlab.report.formatting import (
    clip,
    fmt_duration,
    fmt_int,
    fmt_ms,
    fmt_num,
    fmt_share,
    fmt_time,
    text,
)
from burstlab.report.run_loader import Engine, Named, Run, Target
from burstlab.results.bursts import BurstView
from burstlab.results.manifest import Manifest
from burstlab.results.metrics import BY_NAME, LATENCY, METRICS, Distribution
from burstlab.results.slo import SLO
from burstlab.results.summary import Peak, RunSummary, UtilisationStats

#: Example error texts shown per failure kind.
EXAMPLES = 3
#: The statistics of the latency table, in column order.
STAT_COLUMNS = ("mean", "p50", "p90", "p95", "p99", "max")
#: Workload model names listed before "(+N more)".
MODELS_SHOWN = 5


def page(run: Run) -> dict[str, Any]:
    """Everything the template shows, as display strings (no figures)."""
    s, m = run.summary, run.manifest
    return {
        "kind": run.kind,
        "run_dir": str(run.path),
        "status": run.status,
        "status_ok": run.status == "complete",
        "notes": run.notes,
        "client_bound": s.client.bound,
        "client_reasons": s.client.reasons,
        "lost": s.lost,
        "target": _engine(run.engine) if run.kind == "simulate" else _target(run),
        "run_info": _run_info(m, s),
        "counts": _counts(s),
        "throughput": _throughput(s),
        "latency": _latency(s),
        "ok_count": fmt_int(s.counts.ok),
        "scheduled_count": fmt_int(s.counts.scheduled),
        "jitter": fmt_ms(s.jitter_s),
        "censored": _censored(s.attempt_s.censored),
        "health": [
            ("event loop lag, max", fmt_ms(s.client.loop_lag_max_s) + " ms"),
            ("client CPU share, max", fmt_num(s.client.cpu_share_max)),
            ("waited for a pooled connection, max", fmt_ms(s.conn_queued_max_s) + " ms"),
        ],
        "lengths": _lengths(s),
        "failures": _failures(run.records, s),
        "bursts": _bursts(s.burst) if s.burst is not None else None,
        "autoscale": _autoscale(run),
        "utilisation": _utilisation(s.engine.utilisation if s.engine else None),
    }


def _target(run: Run) -> list[tuple[str, str]]:
    """The server a bench run measured and how it was driven."""
    t = run.target or Target()
    m = run.manifest
    rows = [
        ("URL", text(t.url)),
        ("model", text(t.model)),
        ("API", text(t.api)),
        ("backend", text(t.backend)),
        ("streaming", text(t.stream)),
        ("prompts", text(m.prompt_mode if m is not None else None)),
        ("max concurrency", text(t.max_concurrency or "unbounded")),
        ("client workers", text(t.workers)),
        ("seed", text(t.seed)),
        ("SLO", _slo_text(m.slo if m is not None else None)),
    ]
    table = run.records
    if table is not None and table.height:
        models = table["model"].cast(pl.String).drop_nulls().unique().sort().to_list()
        if models:
            more = len(models) - MODELS_SHOWN
            shown = ", ".join(models[:MODELS_SHOWN]) + (f" (+{more} more)" if more > 0 else "")
            rows.append(("workload models", shown))
    return rows


def _slo_text(slo: SLO | None) -> str:
    if slo is None:
        return "none given"
    limits = [(name, getattr(slo, name)) for name in SLO.model_fields]
    given = [f"{name} ≤ {fmt_ms(v)} ms" for name, v in limits if v is not None]
    return ", ".join(given) or "none given"


def _engine(spec: Engine | None) -> list[tuple[str, str]]:
    """The simulated replica (or cluster), from a ``simulate`` run's manifest."""
    e = spec or Engine()
    if e.plan is not None and e.plan.instances:
        counts = e.plan.instances
        replicas = f"autoscaled by a plan, {min(counts)}-{max(counts)} instances"
    elif e.pd is not None:
        dynamic = " (dynamic ratio)" if e.pd.dynamic else ""
        replicas = f"prefill:decode {text(e.pd.prefill)}:{text(e.pd.decode)}{dynamic}"
    else:
        cluster = e.cluster
        count = (cluster.replicas if cluster else None) or 1
        replicas = f"{text(count)} ({text(cluster.router if cluster else None)})"
    sched = e.engine
    return [
        ("replicas", replicas),
        ("GPU", _name(e.gpu)),
        ("model", _name(e.model)),
        ("tensor parallel", text(e.tp)),
        ("cost model", text(e.cost.kind if e.cost else None)),
        ("scheduler", text(sched.scheduler if sched else None)),
        ("max sequences", text(sched.max_num_seqs if sched else None)),
        ("max batched tokens", text(sched.max_batched_tokens if sched else None)),
        (
            "KV blocks",
            f"{text(sched.num_blocks if sched else None)} x "
            f"{text(sched.block_size if sched else None)} tokens",
        ),
        ("preemption", text(sched.preemption if sched else None)),
        ("queue cap", text((sched.queue_cap if sched else None) or "none")),
    ]


def _name(part: Named | str | None) -> str:
    """A GPU or model as described: a preset's name, or the name of its fields."""
    return text(part.name if isinstance(part, Named) else part)


def _run_info(m: Manifest | None, s: RunSummary) -> list[tuple[str, str]]:
    versions = ", ".join(f"{k} {v}" for k, v in m.versions.items()) if m else ""
    return [
        ("run id", text(m.run_id if m else None)),
        ("started", fmt_time(m.started_wall if m else None)),
        ("measured span", fmt_duration(s.duration_s)),
        ("host", text(m.host if m else None)),
        ("platform", text(m.platform if m else None)),
        ("versions", versions or "-"),
    ]


def _counts(s: RunSummary) -> list[tuple[str, str]]:
    c = s.counts
    rows = [
        ("scheduled", fmt_int(c.scheduled)),
        ("ok", fmt_int(c.ok)),
        ("failed", fmt_int(c.failed)),
        ("cancelled", fmt_int(c.cancelled)),
        ("not sent", fmt_int(c.not_sent)),
        ("failure rate", fmt_share(s.failure_rate, 2)),
    ]
    if s.lost:
        rows.append(("lost (no record)", fmt_int(s.lost)))
    return rows


def _throughput(s: RunSummary) -> list[tuple[str, str]]:
    t = s.throughput
    rows = [
        ("offered rate", fmt_num(s.offered_rate_rps) + " req/s"),
        ("completed", fmt_num(t.requests_per_s) + " req/s"),
        ("output tokens", fmt_num(t.output_tokens_per_s, 1) + " tok/s"),
        ("total tokens", fmt_num(t.total_tokens_per_s, 1) + " tok/s"),
    ]
    g = s.goodput
    if g is not None:
        rows.append(
            (
                "goodput (from sent)",
                f"{fmt_num(g.requests_per_s)} req/s ({fmt_int(g.good_requests)} requests)",
            )
        )
        rows.append(
            (
                "goodput (from intended)",
                f"{fmt_num(g.requests_per_s_intended)} req/s "
                f"({fmt_int(g.good_requests_intended)} requests)",
            )
        )
    return rows


def _latency(s: RunSummary) -> list[dict[str, Any]]:
    """The latency table: every latency metric of the metric table (over ok
    requests), then every attempt, then the schedule lag of every sent request."""
    rows = [
        _latency_row(m.label, m.definition, s.metrics.get(m.name))
        for m in METRICS
        if m.name in LATENCY
    ]
    rows.append(_latency_row("attempt", "end - sent, failures included", s.attempt_s))
    lag = BY_NAME["schedule_lag_s"]
    rows.append(_latency_row(lag.label, f"{lag.definition}, every sent request", s.schedule_lag_s))
    return rows


def _latency_row(name: str, definition: str, stats: Distribution | None) -> dict[str, Any]:
    d = stats or Distribution(count=0)
    return {
        "name": name,
        "basis": definition,
        "n": fmt_int(d.count) if stats is not None else "-",
        "values": [fmt_ms(getattr(d, c), like=d.p50) for c in STAT_COLUMNS],
    }


def _censored(names: list[str]) -> str:
    """The sentence saying which attempt percentiles failures make unreadable, or ''."""
    if not names:
        return ""
    verb = "is" if len(names) == 1 else "are"
    return (
        f"The attempt row's {', '.join(names)} {verb} censored: failures are too common "
        "for the successes to speak for them."
    )


def _lengths(s: RunSummary) -> list[tuple[str, str, str, str]]:
    ln = s.lengths
    return [
        (
            "input",
            fmt_int(ln.input_requested),
            fmt_int(ln.input_achieved),
            fmt_int(ln.input_mismatched_requests),
        ),
        (
            "output",
            fmt_int(ln.output_requested),
            fmt_int(ln.output_achieved),
            fmt_int(ln.output_mismatched_requests),
        ),
    ]


def _failures(table: pl.DataFrame | None, s: RunSummary) -> list[dict[str, Any]]:
    """One row per ``kind.subkind``: count, share of failures, HTTP statuses, examples
    (from the records; from the summary's counts alone when there are none)."""
    if table is None:
        total = sum(s.failures_by_subkind.values()) or 1
        return [
            {
                "kind": key,
                "count": fmt_int(count),
                "share": fmt_share(count / total),
                "statuses": "-",
                "examples": [],
            }
            for key, count in sorted(s.failures_by_subkind.items(), key=lambda kv: -kv[1])
        ]
    failed = table.select(
        "outcome", "error_kind", "error_subkind", "http_status", "error_text"
    ).filter(pl.col("outcome") == "failed")
    if failed.height == 0:
        return []
    keyed = failed.with_columns(
        pl.concat_str(
            pl.col("error_kind").fill_null("unknown"),
            "error_subkind",
            separator=".",
            ignore_nulls=True,
        ).alias("key")
    )
    groups = (
        keyed.group_by("key")
        .agg(
            pl.len().alias("count"),
            pl.col("http_status").drop_nulls().unique().sort().alias("statuses"),
            pl.col("error_text").drop_nulls().unique(maintain_order=True).head(EXAMPLES),
        )
        .sort(["count", "key"], descending=[True, False])
    )
    return [
        {
            "kind": text(key),
            "count": f"{count:,}",
            "share": fmt_share(count / failed.height),
            "statuses": ", ".join(str(x) for x in statuses) or "-",
            "examples": [clip(t) for t in texts],
        }
        for key, count, statuses, texts in groups.iter_rows()
    ]


def _bursts(b: BurstView) -> dict[str, Any]:
    """The burst view of a simulated run: busiest windows against the rest, recovery."""
    rows = [
        (
            label,
            fmt_int(side.requests),
            fmt_share(side.failure_rate),
            fmt_ms(side.ttft_mean_s),
            fmt_ms(side.ttft_p99_s),
            fmt_ms(side.e2e_mean_s),
            fmt_ms(side.e2e_p99_s),
        )
        for label, side in (("busiest windows", b.burst), ("the rest", b.rest))
    ]
    rec = b.recovery
    return {
        "window": fmt_num(b.window_s, 1),
        "count": fmt_int(b.busy_windows),
        "rows": rows,
        "baseline": fmt_ms(rec.baseline_ttft_p90_s),
        "limit": fmt_ms(rec.limit_s),
        "recovery": [
            (
                fmt_num(x.start_s, 1),
                fmt_num(x.end_s, 1),
                fmt_num(x.recovery_s, 1) if x.recovery_s is not None else "not recovered",
            )
            for x in rec.bursts
        ],
    }


def _utilisation(u: UtilisationStats | None) -> dict[str, Any] | None:
    """The simulated GPUs' utilisation: means over the run and while busy, the peak
    bin, and each replica's means (percent)."""
    if u is None:
        return None

    def peak(p: Peak | None) -> str:
        if p is None:
            return "-"
        where = f", replica {p.replica}" if p.replica is not None else ""
        return f"{fmt_share(p.value)} at {fmt_num(p.start_s, 1)} s{where}"

    return {
        "roofline": u.basis == "roofline",
        "window": fmt_duration(u.window_s),
        "bin": f"{u.bin_s:g}",
        "rows": [
            ("busy share", fmt_share(u.busy_share), "-", peak(u.peak_busy_share)),
            *(
                [
                    ("MFU", fmt_share(u.mfu), fmt_share(u.mfu_when_busy), peak(u.peak_mfu)),
                    ("MBU", fmt_share(u.mbu), fmt_share(u.mbu_when_busy), peak(u.peak_mbu)),
                ]
                if u.basis == "roofline"
                else []
            ),
        ],
        "replicas": [
            (str(r.replica), fmt_share(r.busy_share), fmt_share(r.mfu), fmt_share(r.mbu))
            for r in u.replicas
        ],
    }


def _autoscale(run: Run) -> list[tuple[str, ...]] | None:
    """Rows of the autoscaling comparison (``autoscale.json``), if the run has one."""
    if run.autoscale is None or not run.autoscale.policies:
        return None
    return [
        (
            name,
            fmt_share(p.slo_attainment),
            fmt_share(p.failure_rate),
            fmt_ms(p.ttft_p99_s),
            fmt_ms(p.e2e_p99_s),
            fmt_num(p.instance_hours),
            fmt_num(p.mean_instances),
            fmt_int(p.peak_instances),
        )
        for name, p in run.autoscale.policies.items()
    ]
