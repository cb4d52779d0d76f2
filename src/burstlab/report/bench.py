"""``report.html`` for a ``burstlab bench`` run: one page a serving engineer reads
after a benchmark, with no scripts and every image inline.

The page reads the run directory as ``burstlab bench`` leaves it
(``records.jsonl``, ``summary.json``, ``run.json``); a run killed before its
summary was written is still reported, from its records. Everything that came
from the server or the workload (model names, error texts, URLs) is untrusted:
it reaches the page only through Jinja2's autoescaping and the page forbids
scripts with its Content-Security-Policy. Figure labels never carry such text,
so matplotlib's mathtext cannot be fed hostile input either.

Latencies are shown in milliseconds; times on the figures' x axes are the
intended send times, from the run's ``t0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from burstlab.core.errors import InputError
from burstlab.core.files import read_json_object
from burstlab.report import plots
from burstlab.report.page import write_page
from burstlab.results.records import ERROR_KINDS, load_records
from burstlab.results.summary import SLO, summarize

#: At most this many points in a scatter plot; more are thinned evenly (deterministic).
MAX_POINTS = 20_000
#: Longest error text shown per example, in characters.
EXAMPLE_CHARS = 200
#: Example error texts shown per failure kind.
EXAMPLES = 3
#: Candidate window widths, seconds: the smallest giving at most WINDOWS windows is used.
WINDOWS = 40
NICE_WINDOWS_S = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
#: Client-bound schedule-lag p99 limit, ms (RELIABILITY.md 2.2; drawn on the lag histogram).
LAG_LIMIT_MS = 10.0

KIND_COLOURS = {
    "http_429": "#ff7f0e",
    "http_3xx": "#bcbd22",
    "http_4xx": "#e377c2",
    "http_5xx": "#d62728",
    "timeout": "#9467bd",
    "connect": "#8c564b",
    "reset": "#1f77b4",
    "stream_error": "#17becf",
    "truncated": "#2ca02c",
    "empty": "#7f7f7f",
    "internal": "#000000",
    "other": "#aec7e8",
    "cancelled": "#c7c7c7",
    "not_sent": "#e7e7e7",
}


@dataclass(slots=True)
class Run:
    """A run directory as read: any file may be missing (``{}`` or ``None``)."""

    path: Path
    manifest: dict[str, Any]
    summary: dict[str, Any]
    table: pl.DataFrame | None
    notes: list[str] = field(default_factory=list)
    recomputed: bool = False


def render_run(run_dir: str | Path, *, with_plots: bool = True) -> Path:
    """Write ``run_dir/report.html`` for a bench run and return its path.

    Raises :class:`~burstlab.core.errors.InputError` naming the directory when it
    is missing or holds no run (no records and no summary).
    """
    run = load_run(run_dir)
    context = page(run)
    context["figures"] = figures(run) if with_plots else []
    context["plots"] = with_plots
    return write_page(run.path / "report.html", "bench.html.j2", **context)


# -- reading -----------------------------------------------------------------------------


def load_run(run_dir: str | Path) -> Run:
    """Read a run directory; recompute the summary from the records when it is missing."""
    path = Path(run_dir)
    if not path.is_dir():
        raise InputError("no such run directory", path=str(path))
    records, summary_path = path / "records.jsonl", path / "summary.json"
    manifest = _read_json(path / "run.json")
    notes: list[str] = []
    recomputed = False
    table = load_records(records) if records.is_file() else None
    if summary_path.is_file():
        summary = _read_json(summary_path)
    elif table is not None and table.height > 0:
        summary = summarize(table, slo=_slo(manifest))
        recomputed = True
        notes.append(
            "summary.json is missing (the run was killed before it ended?): the summary "
            "was recomputed from records.jsonl, without the client's health samples"
        )
    else:
        raise InputError(
            "holds no bench run (no records and no summary.json)",
            path=str(path),
            hint="pass the directory given to burstlab bench -o",
        )
    if table is None:
        notes.append("records.jsonl is missing: no figures and no example errors")
    elif table.height == 0:
        notes.append("records.jsonl holds no records")
    return Run(path, manifest, summary, table, notes, recomputed)


def _read_json(path: Path) -> dict[str, Any]:
    """A run file's JSON object ({} when the file is missing)."""
    return read_json_object(path) or {}


def _slo(manifest: dict[str, Any]) -> SLO | None:
    raw = _dig(manifest, "config", "slo")
    if not isinstance(raw, dict):
        return None
    try:
        return SLO.model_validate(raw)
    except ValueError:
        return None


def _dig(obj: Any, *keys: str) -> Any:
    """``obj[k1][k2]...``, or ``None`` where a level is missing or not a mapping."""
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _map(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def _num(value: Any) -> float | None:
    """A finite number, or ``None`` (booleans, strings and NaN are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


# -- formatting --------------------------------------------------------------------------


def fmt_ms(seconds: Any, like: Any = None) -> str:
    """Seconds as milliseconds with precision that suits the size (0.042, 4.20, 42.0,
    4,200); the size of ``like`` (seconds) sets it when given, so a table row reads
    with one precision."""
    v = _num(seconds)
    if v is None:
        return "-"
    ms = v * 1e3
    size = abs(ms if (ref := _num(like)) is None else ref * 1e3)
    digits = 3 if size < 1 else 2 if size < 10 else 1 if size < 1000 else 0
    return f"{ms:,.{digits}f}"


def fmt_num(value: Any, digits: int = 2) -> str:
    """A number with ``digits`` decimals and thousands separators, or ``-``."""
    v = _num(value)
    return "-" if v is None else f"{v:,.{digits}f}"


def fmt_int(value: Any) -> str:
    v = _num(value)
    return "-" if v is None else f"{round(v):,}"


def fmt_time(unix_s: Any) -> str:
    v = _num(unix_s)
    if v is None:
        return "-"
    try:
        return datetime.fromtimestamp(v, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return "-"


def fmt_duration(seconds: Any) -> str:
    v = _num(seconds)
    if v is None:
        return "-"
    if v < 120:
        return f"{v:.1f} s"
    if v < 7200:
        return f"{v / 60:.1f} min"
    return f"{v / 3600:.2f} h"


def _text(value: Any) -> str:
    """Any JSON value as display text (escaped later by the template)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _clip(text: str, limit: int = EXAMPLE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- the page ----------------------------------------------------------------------------

LATENCY_ROWS = (
    ("TTFT", "from sent", ("metrics", "ttft_s")),
    ("TTFT", "from intended", ("metrics", "ttft_intended_s")),
    ("TPOT", "per output token after the first", ("metrics", "tpot_s")),
    ("ITL", "gap between token chunks", ("metrics", "itl_s")),
    ("E2E", "from sent", ("metrics", "e2e_s")),
    ("E2E", "from intended", ("metrics", "e2e_intended_s")),
    ("attempt", "sent to end, failures included", ("attempt_s",)),
    ("schedule lag", "dispatched − intended, all sent", ("schedule_lag_s",)),
)
STAT_COLUMNS = ("mean", "p50", "p90", "p95", "p99", "max")


def page(run: Run) -> dict[str, Any]:
    """Everything the template shows, as display strings (no figures)."""
    s, m = run.summary, run.manifest
    config = _map(m.get("config"))
    status = _text(s.get("status") or m.get("status") or "unknown")
    if run.recomputed and status == "running":
        status = "incomplete"  # the manifest was never rewritten at the end
    counts = _map(s.get("counts"))
    client = _map(s.get("client"))
    raw_reasons = client.get("reasons")
    reasons = [_text(r) for r in raw_reasons] if isinstance(raw_reasons, list) else []
    simulated = m.get("kind") == "simulate"
    return {
        "kind": "simulate" if simulated else "bench",
        "run_dir": str(run.path),
        "status": status,
        "status_ok": status == "complete",
        "notes": run.notes,
        "client_bound": bool(client.get("bound")),
        "client_reasons": reasons,
        "lost": int(_num(s.get("lost")) or 0),
        "target": _engine(m) if simulated else _target(config, m, run.table),
        "run_info": _run_info(m, s),
        "counts": _counts(counts, s),
        "throughput": _throughput(s),
        "latency": _latency(s),
        "ok_count": fmt_int(counts.get("ok")),
        "scheduled_count": fmt_int(counts.get("scheduled")),
        "jitter": fmt_ms(s.get("jitter_s")),
        "censored": _censored(_dig(s, "attempt_s", "censored")),
        "health": [
            ("event loop lag, max", fmt_ms(client.get("loop_lag_max_s")) + " ms"),
            ("client CPU share, max", fmt_num(client.get("cpu_share_max"))),
            ("waited for a pooled connection, max", fmt_ms(s.get("conn_queued_max_s")) + " ms"),
        ],
        "lengths": _lengths(s),
        "failures": _failures(run.table, s),
        "bursts": _bursts(_map(s.get("burst"))),
        "autoscale": _autoscale(_read_json(run.path / "autoscale.json")),
    }


def _bursts(b: dict[str, Any]) -> dict[str, Any] | None:
    """The burst view of a simulated run: busiest windows against the rest, recovery."""
    if not b:
        return None
    rows = []
    for name in ("burst", "rest"):
        part = _map(b.get(name))
        rate = _num(part.get("failure_rate"))
        rows.append(
            (
                "busiest windows" if name == "burst" else "the rest",
                fmt_int(part.get("requests")),
                f"{rate:.1%}" if rate is not None else "-",
                fmt_ms(part.get("ttft_mean_s")),
                fmt_ms(part.get("ttft_p99_s")),
                fmt_ms(part.get("e2e_mean_s")),
                fmt_ms(part.get("e2e_p99_s")),
            )
        )
    rec = _map(b.get("recovery"))
    return {
        "window": fmt_num(b.get("window_s"), 1),
        "count": fmt_int(b.get("busy_windows")),
        "rows": rows,
        "baseline": fmt_ms(rec.get("baseline_ttft_p90_s")),
        "limit": fmt_ms(rec.get("limit_s")),
        "recovery": [
            (
                fmt_num(_map(x).get("start_s"), 1),
                fmt_num(_map(x).get("end_s"), 1),
                fmt_num(_map(x).get("recovery_s"), 1)
                if _num(_map(x).get("recovery_s")) is not None
                else "not recovered",
            )
            for x in rec.get("bursts") or []
        ],
    }


def _autoscale(a: dict[str, Any]) -> list[tuple[str, ...]] | None:
    """Rows of the autoscaling comparison (``autoscale.json``), if the run has one."""
    policies = _map(a.get("policies"))
    if not policies:
        return None
    rows: list[tuple[str, ...]] = []
    for name, raw in policies.items():
        p = _map(raw)
        met, failed = _num(p.get("slo_attainment")), _num(p.get("failure_rate"))
        rows.append(
            (
                _text(name),
                f"{met:.1%}" if met is not None else "-",
                f"{failed:.1%}" if failed is not None else "-",
                fmt_ms(p.get("ttft_p99_s")),
                fmt_ms(p.get("e2e_p99_s")),
                fmt_num(p.get("instance_hours")),
                fmt_num(p.get("mean_instances")),
                fmt_int(p.get("peak_instances")),
            )
        )
    return rows


def _censored(names: Any) -> str:
    """The sentence saying which attempt percentiles failures make unreadable, or ''."""
    if not isinstance(names, list) or not names:
        return ""
    listed = ", ".join(_text(n) for n in names)
    verb = "is" if len(names) == 1 else "are"
    return (
        f"The attempt row's {listed} {verb} censored: failures are too common for "
        "the successes to speak for them."
    )


def _target(
    config: dict[str, Any], m: dict[str, Any], table: pl.DataFrame | None
) -> list[tuple[str, str]]:
    slo = config.get("slo")
    slo_text = (
        ", ".join(f"{k} ≤ {fmt_ms(v)} ms" for k, v in slo.items() if _num(v) is not None)
        if isinstance(slo, dict)
        else ""
    )
    rows = [
        ("URL", _text(config.get("url"))),
        ("model", _text(config.get("model"))),
        ("API", _text(config.get("api"))),
        ("backend", _text(config.get("backend"))),
        ("streaming", _text(config.get("stream"))),
        ("prompts", _text(m.get("prompt_mode"))),
        ("max concurrency", _text(config.get("max_concurrency") or "unbounded")),
        ("client workers", _text(config.get("workers"))),
        ("seed", _text(config.get("seed"))),
        ("SLO", slo_text or "none given"),
    ]
    if table is not None and table.height:
        models = table["model"].cast(pl.String).drop_nulls().unique().sort().to_list()
        if models:
            shown = ", ".join(models[:5]) + (
                f" (+{len(models) - 5} more)" if len(models) > 5 else ""
            )
            rows.append(("workload models", shown))
    return rows


def _engine(m: dict[str, Any]) -> list[tuple[str, str]]:
    """The simulated replica, from a ``simulate`` run's manifest."""
    spec = _map(m.get("engine"))
    engine = _map(spec.get("engine"))
    cost = _map(spec.get("cost"))
    cluster = _map(spec.get("cluster"))
    pd, plan = _map(spec.get("pd")), _map(spec.get("plan"))
    if plan and isinstance(plan.get("instances"), list) and plan["instances"]:
        counts = plan["instances"]
        replicas = f"autoscaled by a plan, {min(counts)}-{max(counts)} instances"
    elif pd:
        dynamic = " (dynamic ratio)" if pd.get("dynamic") else ""
        replicas = f"prefill:decode {_text(pd.get('prefill'))}:{_text(pd.get('decode'))}{dynamic}"
    else:
        replicas = f"{_text(cluster.get('replicas') or 1)} ({_text(cluster.get('router'))})"
    return [
        ("replicas", replicas),
        ("GPU", _text(_map(spec.get("gpu")).get("name"))),
        ("model", _text(_map(spec.get("model")).get("name"))),
        ("tensor parallel", _text(spec.get("tp"))),
        ("cost model", _text(cost.get("kind"))),
        ("scheduler", _text(engine.get("scheduler"))),
        ("max sequences", _text(engine.get("max_num_seqs"))),
        ("max batched tokens", _text(engine.get("max_batched_tokens"))),
        (
            "KV blocks",
            f"{_text(engine.get('num_blocks'))} x {_text(engine.get('block_size'))} tokens",
        ),
        ("preemption", _text(engine.get("preemption"))),
        ("queue cap", _text(engine.get("queue_cap") or "none")),
    ]


def _run_info(m: dict[str, Any], s: dict[str, Any]) -> list[tuple[str, str]]:
    versions = m.get("versions")
    version_text = (
        ", ".join(f"{k} {v}" for k, v in versions.items()) if isinstance(versions, dict) else "-"
    )
    return [
        ("run id", _text(m.get("run_id"))),
        ("started", fmt_time(m.get("started_wall"))),
        ("measured span", fmt_duration(s.get("duration_s"))),
        ("host", _text(m.get("host"))),
        ("platform", _text(m.get("platform"))),
        ("versions", version_text),
    ]


def _counts(counts: dict[str, Any], s: dict[str, Any]) -> list[tuple[str, str]]:
    rate = _num(s.get("failure_rate"))
    rows = [
        ("scheduled", fmt_int(counts.get("scheduled"))),
        ("ok", fmt_int(counts.get("ok"))),
        ("failed", fmt_int(counts.get("failed"))),
        ("cancelled", fmt_int(counts.get("cancelled"))),
        ("not sent", fmt_int(counts.get("not_sent"))),
        ("failure rate", "-" if rate is None else f"{100 * rate:.2f}%"),
    ]
    if _num(s.get("lost")):
        rows.append(("lost (no record)", fmt_int(s.get("lost"))))
    return rows


def _throughput(s: dict[str, Any]) -> list[tuple[str, str]]:
    t = _map(s.get("throughput"))
    rows = [
        ("offered rate", fmt_num(s.get("offered_rate_rps")) + " req/s"),
        ("completed", fmt_num(t.get("requests_per_s")) + " req/s"),
        ("output tokens", fmt_num(t.get("output_tokens_per_s"), 1) + " tok/s"),
        ("total tokens", fmt_num(t.get("total_tokens_per_s"), 1) + " tok/s"),
    ]
    goodput = s.get("goodput")
    if isinstance(goodput, dict):
        rows.append(
            (
                "goodput (from sent)",
                f"{fmt_num(goodput.get('requests_per_s'))} req/s "
                f"({fmt_int(goodput.get('good_requests'))} requests)",
            )
        )
        rows.append(
            (
                "goodput (from intended)",
                f"{fmt_num(goodput.get('requests_per_s_intended'))} req/s "
                f"({fmt_int(goodput.get('good_requests_intended'))} requests)",
            )
        )
    return rows


def _latency(s: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, basis, keys in LATENCY_ROWS:
        stats = _dig(s, *keys)
        stats = _map(stats)
        rows.append(
            {
                "name": name,
                "basis": basis,
                "n": fmt_int(stats.get("count")),
                "values": [fmt_ms(stats.get(c), like=stats.get("p50")) for c in STAT_COLUMNS],
            }
        )
    return rows


def _lengths(s: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    ln = s.get("lengths")
    if not isinstance(ln, dict):
        return []
    return [
        (
            "input",
            fmt_int(ln.get("input_requested")),
            fmt_int(ln.get("input_achieved")),
            fmt_int(ln.get("input_mismatched_requests")),
        ),
        (
            "output",
            fmt_int(ln.get("output_requested")),
            fmt_int(ln.get("output_achieved")),
            fmt_int(ln.get("output_mismatched_requests")),
        ),
    ]


def _failures(table: pl.DataFrame | None, s: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per ``kind.subkind``: count, share of failures, HTTP statuses, examples."""
    if table is None:
        by_sub = s.get("failures_by_subkind")
        if not isinstance(by_sub, dict):
            return []
        total = sum(int(_num(v) or 0) for v in by_sub.values()) or 1
        return [
            {
                "kind": _text(k),
                "count": fmt_int(v),
                "share": f"{100 * (_num(v) or 0) / total:.1f}%",
                "statuses": "-",
                "examples": [],
            }
            for k, v in sorted(by_sub.items(), key=lambda kv: -(_num(kv[1]) or 0))
        ]
    failed = table.filter(pl.col("outcome") == "failed")
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
    rows = []
    for key, count, statuses, texts in groups.iter_rows():
        rows.append(
            {
                "kind": _text(key),
                "count": f"{count:,}",
                "share": f"{100 * count / failed.height:.1f}%",
                "statuses": ", ".join(str(x) for x in statuses) or "-",
                "examples": [_clip(t) for t in texts],
            }
        )
    return rows


# -- figures -----------------------------------------------------------------------------


def figures(run: Run) -> list[tuple[str, str]]:
    """(caption, data URI) for every figure the run's records support."""
    table = run.table
    if table is None or table.height == 0:
        return []
    slo = _map(run.summary.get("slo"))
    window = window_for(table)
    made = [
        (
            "TTFT and E2E (from sent) of each ok request against its intended send time; "
            f"lines are the p50 and p99 per {window:g}-s window, orange the offered rate",
            latency_over_time(table, window),
        ),
        (
            "Latency distributions of ok requests: solid blue from sent, dashed purple "
            "from intended (what the user saw); dotted red lines are the SLOs",
            latency_cdfs(table, slo),
        ),
        (
            f"Requests that did not succeed, per {window:g}-s window, by kind; "
            "grey: every scheduled request",
            failures_over_time(table, window),
        ),
        (
            "Schedule lag (dispatched minus intended send time); a p99 above 10 ms means "
            "the client, not the server, set the pace",
            lag_histogram(table),
        ),
        (
            "Requested against achieved lengths of ok requests: points below the line "
            "stopped early (EOS not ignored, or a max-tokens cap)",
            lengths_scatter(table),
        ),
    ]
    scaled = _read_json(run.path / "autoscale.json")
    if _map(scaled.get("timelines")):
        made.append(
            (
                "Instances paid for over time under each autoscaling policy (booting and "
                f"draining included), and the arrival rate per {window:g}-s window",
                autoscale_timelines(scaled, table, window),
            )
        )
    telemetry = run.path / "telemetry.parquet"
    if telemetry.is_file():
        made.append(
            (
                "Simulated engine over time: batch size, running and waiting requests, KV "
                "blocks in use, and preemptions so far (one point per scheduling step)",
                engine_telemetry(pl.read_parquet(telemetry)),
            )
        )
    return [(caption, uri) for caption, png in made if (uri := plots.data_uri(png)) is not None]


def window_for(table: pl.DataFrame) -> float:
    """A round window width giving at most :data:`WINDOWS` windows over the schedule,
    and fewer for small runs (about ten requests a window, five windows at least)."""
    span = _span(table)
    most = max(5, min(WINDOWS, table.height // 10))
    for width in NICE_WINDOWS_S:
        if span / width <= most:
            return float(width)
    return float(math.ceil(span / most / 3600) * 3600)


def _span(table: pl.DataFrame) -> float:
    arrivals = _finite(table["arrival_s"])
    return float(arrivals.max() - _origin(arrivals)) if arrivals.size else 0.0


def _origin(arrivals: np.ndarray) -> float:
    """Where time axes start (s): 0, unless the run starts later than it lasts (a part
    of a long trace, as an autoscaled run is), then its first arrival."""
    first, last = float(arrivals.min()), float(arrivals.max())
    return min(first, 0.0) if first <= last - first else first


def _finite(series: pl.Series) -> np.ndarray:
    values = np.asarray(series.cast(pl.Float64).fill_null(float("nan")).to_numpy(), np.float64)
    kept: np.ndarray = values[np.isfinite(values)]
    return kept


def _time_unit(span_s: float) -> tuple[float, str]:
    if span_s <= 600:
        return 1.0, "s"
    if span_s <= 3 * 3600:
        return 60.0, "min"
    return 3600.0, "h"


def _thin(n: int) -> slice:
    return slice(None, None, max(1, math.ceil(n / MAX_POINTS)))


def _offered(table: pl.DataFrame, window: float) -> tuple[np.ndarray, np.ndarray]:
    """Window left edges (s) and scheduled requests per window, zeros included."""
    arrivals = _finite(table["arrival_s"])
    if arrivals.size == 0:
        return np.array([0.0]), np.array([0.0])
    first = math.floor(_origin(arrivals) / window)
    last = math.floor(arrivals.max() / window)
    edges = np.arange(first, last + 2) * window
    counts, _ = np.histogram(arrivals, bins=edges)
    return edges[:-1], counts.astype(np.float64)


def _log_scale_fits(values: np.ndarray, ratio: float = 50.0) -> bool:
    positive = values[values > 0]
    if positive.size < 2 or positive.size < values.size:
        return False
    lo, hi = np.percentile(positive, [1, 99])
    return bool(hi / lo > ratio)


def _steps(starts: np.ndarray, values: np.ndarray, window: float) -> tuple[np.ndarray, np.ndarray]:
    """Step-plot inputs: window edges and values, the last value repeated."""
    return np.append(starts, starts[-1] + window), np.append(values, values[-1])


def _legend_above(ax: Any, handles: list[Any], labels: list[str]) -> None:
    ax.legend(
        handles,
        labels,
        loc="lower left",
        bbox_to_anchor=(0.0, 1.0),
        ncols=min(len(labels), 6),
        fontsize=8,
        frameon=False,
        markerscale=3,
        handlelength=1.6,
    )


def latency_over_time(table: pl.DataFrame, window: float) -> bytes | None:
    """TTFT and E2E of each ok request (ms) against intended time, with per-window
    p50/p99 and the offered request rate on a second axis; ``None`` with no ok request."""
    if not (table["outcome"] == "ok").any():
        return None
    span = _span(table)
    scale, unit = _time_unit(span + window)
    starts, offered = _offered(table, window)
    edges, rates = _steps(starts / scale, offered / window, window / scale)
    ok = table.filter(pl.col("outcome") == "ok")
    fig, axes = plots.grid(2, 1, height=3.1)
    for ax, column, name in ((axes[0, 0], "ttft_s", "TTFT"), (axes[1, 0], "e2e_s", "E2E")):
        part = ok.select("arrival_s", (pl.col(column) * 1e3).alias("ms")).drop_nulls()
        part = part.filter(pl.col("ms").is_finite() & pl.col("arrival_s").is_finite())
        rate = ax.twinx()
        rate.step(edges, rates, where="post", color="tab:orange", lw=1.3, label="offered req/s")
        rate.set_ylabel("offered req/s", color="tab:orange")
        rate.set_ylim(0, max(float(rates.max()), 1e-9) * 1.15)
        rate.tick_params(axis="y", colors="tab:orange")
        ax.set_zorder(rate.get_zorder() + 1)
        ax.patch.set_visible(False)
        ax.set_ylabel(f"{name} from sent (ms)")
        if part.height == 0:
            ax.text(0.5, 0.5, "no successful requests", transform=ax.transAxes, ha="center")
            ax.set_yticks([])
        else:
            x = part["arrival_s"].to_numpy()
            y = part["ms"].to_numpy()
            thin = _thin(x.size)
            ax.plot(x[thin] / scale, y[thin], ".", ms=3, color="tab:blue", alpha=0.35, label=name)
            per = (
                part.group_by((pl.col("arrival_s") // window).alias("w"))
                .agg(
                    pl.col("ms").quantile(0.5).alias("p50"),
                    pl.col("ms").quantile(0.99).alias("p99"),
                )
                .sort("w")
            )
            centres = (per["w"].to_numpy() + 0.5) * window / scale
            ax.plot(centres, per["p50"].to_numpy(), "-", color="black", lw=1.5, label="p50")
            ax.plot(centres, per["p99"].to_numpy(), "-", color="tab:red", lw=1.5, label="p99")
            if _log_scale_fits(y):
                ax.set_yscale("log")
            else:
                ax.set_ylim(0, float(y.max()) * 1.05 or 1.0)
        handles, labels = ax.get_legend_handles_labels()
        more, names = rate.get_legend_handles_labels()
        _legend_above(ax, handles + more, labels + names)
        ax.set_xlim(edges[0], edges[-1])
    axes[1, 0].set_xlabel(f"intended send time ({unit} from start)")
    return plots.to_png(fig)


def _ecdf(ax: Any, values: np.ndarray, **style: Any) -> None:
    v = np.sort(values[np.isfinite(values)])
    if v.size == 0:
        return
    q = np.linspace(0.0, 1.0, min(v.size, 1000))
    ax.plot(np.quantile(v, q), q, **style)


def latency_cdfs(table: pl.DataFrame, slo: dict[str, Any]) -> bytes | None:
    """CDFs (ms) of TTFT and E2E from sent (solid) and intended (dashed), TPOT and ITL."""
    ok = table.filter(pl.col("outcome") == "ok")
    if ok.height == 0:
        return None
    gaps = ok["chunk_s"].drop_nulls().list.diff(null_behavior="drop").explode().drop_nulls()
    panels = (
        ("TTFT", "ttft", _ms(ok["ttft_s"]), _ms(ok["ttft_intended_s"])),
        ("E2E", "e2e", _ms(ok["e2e_s"]), _ms(ok["e2e_intended_s"])),
        ("TPOT", "tpot", _ms(ok["tpot_s"]), None),
        ("ITL", None, _ms(gaps), None),
    )
    fig, axes = plots.grid(2, 2, height=3.0)
    for ax, (name, slo_key, sent, intended) in zip(axes.flat, panels, strict=True):
        ax.set_title(name)
        ax.set_xlabel("ms")
        ax.set_ylabel("CDF")
        ax.grid(alpha=0.3)
        if sent.size == 0:
            why = "no streamed chunks" if name == "ITL" else "no requests with 2+ tokens"
            ax.text(0.5, 0.5, why, transform=ax.transAxes, ha="center")
            continue
        _ecdf(ax, sent, color="tab:blue", label="from sent")
        both = sent
        if intended is not None and intended.size:
            _ecdf(ax, intended, color="tab:purple", ls="--", label="from intended")
            both = np.concatenate([sent, intended])
        limit = _num(slo.get(slo_key)) if slo_key else None
        if limit is not None:
            ax.axvline(limit * 1e3, color="tab:red", ls=":", label="SLO")
        if _log_scale_fits(both, ratio=30.0):
            ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.legend(loc="lower right", fontsize=8)
    return plots.to_png(fig)


def _ms(series: pl.Series) -> np.ndarray:
    return _finite(series) * 1e3


def failures_over_time(table: pl.DataFrame, window: float) -> bytes | None:
    """Stacked bars of failed (by kind), cancelled and not-sent requests per window,
    with every scheduled request per window on a second axis."""
    bad = table.filter(pl.col("outcome") != "ok")
    if bad.height == 0:
        return None
    kind = (
        pl.when(pl.col("outcome") == "failed")
        .then(
            pl.when(pl.col("error_kind").is_in(list(ERROR_KINDS)))
            .then(pl.col("error_kind"))
            .otherwise(pl.lit("other"))
        )
        .when(pl.col("outcome").is_in(["cancelled", "not_sent"]))
        .then(pl.col("outcome"))
        .otherwise(pl.lit("other"))
    )
    starts, offered = _offered(table, window)
    binned = (
        bad.filter(pl.col("arrival_s").is_finite())
        .select(
            ((pl.col("arrival_s") - starts[0]) // window).cast(pl.Int64).alias("w"),
            kind.alias("k"),
        )
        .group_by("w", "k")
        .len()
    )
    scale, unit = _time_unit(_span(table) + window)
    fig, axes = plots.grid(1, 1, height=3.4)
    ax = axes[0, 0]
    bottom = np.zeros(starts.size)
    present = set(binned["k"].to_list())
    for k in (*ERROR_KINDS, "other", "cancelled", "not_sent"):
        if k not in present:
            continue
        part = binned.filter(pl.col("k") == k)
        heights = np.zeros(starts.size)
        idx = np.clip(part["w"].to_numpy(), 0, starts.size - 1)
        np.add.at(heights, idx, part["len"].to_numpy())
        ax.bar(
            starts / scale,
            heights,
            width=window / scale,
            bottom=bottom,
            align="edge",
            color=KIND_COLOURS[k],
            edgecolor="none",
            label=k,
        )
        bottom += heights
    edges, counts = _steps(starts / scale, offered, window / scale)
    label = f"per {window:g}-s window"
    # Few failures next to many requests get their own axis, or the bars would vanish.
    shared = bottom.max() >= 0.25 * counts.max()
    scheduled = ax if shared else ax.twinx()
    scheduled.step(edges, counts, where="post", color="grey", lw=1, label="scheduled", zorder=3)
    if shared:
        ax.set_ylim(0, max(float(counts.max()), 1.0) * 1.1)
        ax.set_ylabel(f"requests {label}")
    else:
        scheduled.set_ylim(0, max(float(counts.max()), 1.0) * 1.15)
        scheduled.set_ylabel(f"scheduled {label}", color="grey")
        scheduled.tick_params(axis="y", colors="grey")
        ax.set_zorder(scheduled.get_zorder() + 1)
        ax.patch.set_visible(False)
        ax.set_ylim(0, max(float(bottom.max()), 1.0) * 1.1)
        ax.set_ylabel(f"not ok {label}")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel(f"intended send time ({unit} from start)")
    handles, labels = ax.get_legend_handles_labels()
    if not shared:
        more, names = scheduled.get_legend_handles_labels()
        handles, labels = handles + more, labels + names
    _legend_above(ax, handles, labels)
    return plots.to_png(fig)


def lag_histogram(table: pl.DataFrame) -> bytes | None:
    """Histogram of schedule lag (ms) with log-scaled counts, p99 and the 10 ms limit marked."""
    lag = _ms(table.filter(pl.col("dispatched_s").is_not_null())["schedule_lag_s"])
    if lag.size == 0:
        return None
    lo, hi = min(float(lag.min()), 0.0), float(lag.max())
    hi = max(hi, lo + 1.0)  # at least 1 ms wide, so a constant lag is a bar, not a sliver
    fig, axes = plots.grid(1, 1, height=3.0)
    ax = axes[0, 0]
    ax.hist(lag, bins=np.linspace(lo, hi, 81), color="tab:blue")
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.7)  # a single request stays visible
    p99 = float(np.percentile(lag, 99))
    ax.axvline(p99, color="black", ls="--", lw=1, label=f"p99 {p99:.3g} ms")
    if hi >= LAG_LIMIT_MS / 2:
        ax.axvline(LAG_LIMIT_MS, color="tab:red", ls=":", lw=1.2, label="client-bound p99 limit")
    ax.set_xlabel("schedule lag (ms)")
    ax.set_ylabel("requests (log)")
    ax.set_title(f"schedule lag of {lag.size:,} dispatched requests")
    ax.legend(loc="upper right", fontsize=8)
    return plots.to_png(fig)


def lengths_scatter(table: pl.DataFrame) -> bytes | None:
    """Requested against achieved output (and input, where known) tokens, with y = x."""
    ok = table.filter(pl.col("outcome") == "ok")
    pairs = []
    for name, requested, achieved in (
        ("output", "output_tokens", "output_tokens_achieved"),
        ("input", "input_tokens", "input_tokens_achieved"),
    ):
        part = ok.select(requested, achieved).drop_nulls()
        if part.height:
            pairs.append(
                (
                    name,
                    part[requested].to_numpy().astype(float),
                    part[achieved].to_numpy().astype(float),
                )
            )
    if not pairs:
        return None
    fig, axes = plots.grid(1, len(pairs), height=3.6)
    for ax, (name, req, got) in zip(axes[0], pairs, strict=True):
        thin = _thin(req.size)
        ax.plot(req[thin], got[thin], ".", ms=3, alpha=0.35, color="tab:blue")
        top = float(max(req.max(), got.max(), 1.0))
        both = np.concatenate([req, got])
        log = _log_scale_fits(both, ratio=20.0)
        low = float(both[both > 0].min()) if log else 0.0
        ax.plot([low, top], [low, top], "--", color="grey", lw=1, label="y = x")
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
        differ = int((req != got).sum())
        ax.set_title(f"{name} tokens: {differ:,} of {req.size:,} differ")
        ax.set_xlabel("requested")
        ax.set_ylabel("achieved")
        ax.legend(loc="upper left", fontsize=8)
    return plots.to_png(fig)


def engine_telemetry(steps: pl.DataFrame) -> bytes | None:
    """Batch, running, waiting, KV blocks and preemptions of a simulated engine
    against time (from ``telemetry.parquet``, one row per step or fast run; one
    line per replica, up to eight, for a cluster)."""
    if steps.height == 0:
        return None
    if "replica" not in steps.columns:
        steps = steps.with_columns(pl.lit(0).alias("replica"))
    start = steps["start_s"].to_numpy()
    scale, unit = _time_unit(float(start.max() - start.min()))
    fig, axes = plots.grid(3, 1, height=2.2, width=10.0)
    (a, b, c) = axes[:, 0]
    replicas = sorted(steps["replica"].unique().to_list())[:8]
    single = len(replicas) == 1
    for k in replicas:
        part = steps.filter(pl.col("replica") == k)
        keep = _thin(part.height)
        t = part["start_s"].to_numpy()[keep] / scale
        tag = "" if single else f" r{k}"
        for column in ("batch", "running", "waiting") if single else ("running", "waiting"):
            a.step(t, part[column].to_numpy()[keep], where="post", label=column + tag, lw=0.8)
        b.step(t, part["kv_blocks"].to_numpy()[keep], where="post", label=f"r{k}", lw=0.8)
        c.step(t, part["preemptions"].to_numpy()[keep], where="post", label=f"r{k}", lw=0.8)
    a.set_ylabel("requests")
    a.legend(loc="upper right", fontsize=7, ncol=2 if single else 4)
    b.set_ylabel("KV blocks used")
    c.set_ylabel("preemptions (cumulative)")
    c.set_xlabel(f"simulated time ({unit})")
    if not single:
        b.legend(loc="upper right", fontsize=7, ncol=4)
    for ax in (a, b, c):
        ax.grid(alpha=0.3)
    return plots.to_png(fig)


def autoscale_timelines(scaled: dict[str, Any], table: pl.DataFrame, window: float) -> bytes | None:
    """Instance count of every policy against time, with the offered rate."""
    timelines = _map(scaled.get("timelines"))
    starts, counts = _offered(table, window)
    rate = counts / window
    end = float(table["arrival_s"].max() or 0.0)  # type: ignore[arg-type]
    scale, unit = _time_unit(_span(table))
    fig, axes = plots.grid(1, 1, height=3.0, width=10.0)
    ax = axes[0, 0]
    handles = []
    for name, points in timelines.items():
        if not isinstance(points, list) or not points:
            continue
        t = np.array([p[0] for p in points] + [end], dtype=np.float64) / scale
        c = np.array([p[1] for p in points] + [points[-1][1]], dtype=np.float64)
        (line,) = ax.step(t, c, where="post", lw=1.2, label=_text(name))
        handles.append(line)
    ax.set_ylabel("instances")
    ax.set_xlabel(f"time ({unit})")
    ax.grid(alpha=0.3)
    twin = ax.twinx()
    x, y = _steps(starts, rate, window)
    (offered,) = twin.plot(x / scale, y, color="tab:orange", lw=0.8, alpha=0.6, label="arrivals/s")
    twin.set_ylabel("arrivals per second")
    _legend_above(ax, [*handles, offered], [h.get_label() for h in [*handles, offered]])
    return plots.to_png(fig)
