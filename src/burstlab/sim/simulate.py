"""Run a workload through a simulated replica and write a run directory like ``bench``'s.

The simulated client is perfect: every request is sent at its intended time
(schedule lag 0), so ``ttft`` and ``ttft_intended`` agree. Requests the engine
refuses because its queue is full are ``http_429`` failures at their arrival;
requests that waited past the queue timeout are ``timeout`` failures (subkind
``queue``), as a real server's client would see them.
"""

from __future__ import annotations

import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import polars as pl

from burstlab.core.files import atomic_file, write_json
from burstlab.core.version import __version__
from burstlab.results.records import Record, load_records, new_records_file
from burstlab.results.summary import SLO, summarize
from burstlab.sim.engine import OK, REJECTED, TELEMETRY_COLUMNS, TIMED_OUT, Engine, SimResult
from burstlab.sim.fleet import Fleet
from burstlab.trace.io import write_table


def simulate(
    workload: pl.DataFrame,
    engine: Engine | Fleet,
    run_dir: str | Path,
    *,
    description: dict[str, Any] | None = None,
    slo: SLO | None = None,
) -> tuple[SimResult, dict[str, Any]]:
    """Simulate ``workload`` (a request table; ``arrival_s`` = send time) on
    ``engine`` and write ``run.json``, ``schedule.parquet``, ``records.jsonl``,
    ``telemetry.parquet`` and ``summary.json`` into ``run_dir``.

    ``description`` (the engine spec as the user gave it) is saved in
    ``run.json``. Returns the raw result and the summary.
    """
    out = Path(run_dir)
    records_path = new_records_file(out)
    table = workload.sort("arrival_s", maintain_order=True)
    write_table(table, out / "schedule.parquet")
    manifest: dict[str, Any] = {
        "kind": "simulate",
        "status": "running",
        "scheduled": table.height,
        "engine": description or {"config": engine.cfg.model_dump()},
        "versions": {"burstlab": __version__, "python": platform.python_version()},
        "started_wall": time.time(),
    }
    write_json(out / "run.json", manifest)
    started = time.perf_counter()
    result = engine.run(
        table["arrival_s"].to_numpy(),
        table["input_tokens"].to_numpy(),
        table["output_tokens"].to_numpy(),
    )
    seconds = time.perf_counter() - started
    write_records(table, result, records_path)
    telemetry = pl.DataFrame(result.telemetry, schema=list(TELEMETRY_COLUMNS), orient="row")
    if result.replica is not None:
        telemetry = telemetry.with_columns(pl.Series("replica", result.replica))
    with atomic_file(out / "telemetry.parquet") as fh:
        telemetry.write_parquet(fh)
    records = load_records(records_path)
    summary = summarize(records, slo=slo)
    span = float(table["arrival_s"].max() or 0.0)  # type: ignore[arg-type]
    summary["burst"] = burst_view(records, max(1.0, span / 30))
    summary["status"] = "complete"
    summary["lost"] = 0
    summary["engine"] = {
        "iterations": result.iterations,
        "steps": int(result.telemetry.shape[0]),
        "preemptions": int(result.preemptions.sum()),
        "wall_s": seconds,
    }
    write_json(out / "summary.json", summary)
    manifest.update(status="complete", ended_wall=time.time(), counts=summary["counts"])
    write_json(out / "run.json", manifest)
    return result, summary


def write_records(table: pl.DataFrame, result: SimResult, path: Path) -> None:
    """One record per request, in the bench format (times in seconds from 0)."""
    arrival = table["arrival_s"].to_numpy()
    inputs = table["input_tokens"].to_list()
    outputs = table["output_tokens"].to_list()
    models = table["model"].cast(pl.String).to_list()
    logs = table["log_type"].cast(pl.String).to_list()
    sessions = table["session_id"].to_list()
    turns = table["turn"].to_list()
    with path.open("wb") as fh:
        for i in range(table.height):
            at = float(arrival[i])
            rec = Record(
                request_id=i,
                arrival_s=at,
                model=models[i],
                log_type=logs[i],
                session_id=sessions[i],
                turn=turns[i],
                input_tokens=inputs[i],
                output_tokens=outputs[i],
                dispatched_s=at,
                sent_s=at,
            )
            code = int(result.outcome[i])
            if code == OK:
                times = result.token_times(i)
                rec.outcome = "ok"
                rec.http_status = 200
                rec.first_s = float(result.first[i])
                rec.end_s = float(result.end[i])
                rec.chunk_s = times.tolist()
                rec.chunk_tokens = [1] * times.size
                rec.input_tokens_achieved = inputs[i]
                rec.output_tokens_achieved = int(times.size)
                rec.tokens_source = "usage"
                rec.finish_reason = "length"
            elif code == REJECTED:
                rec.fail("http_429", "queue_full", "the engine's waiting queue was full")
                rec.http_status = 429
                rec.end_s = float(result.end[i])
            elif code == TIMED_OUT:
                rec.fail("timeout", "queue", "waited in the engine's queue past its timeout")
                rec.end_s = float(result.end[i])
            else:
                rec.fail("internal", "unfinished", "the simulation ended before this request")
            fh.write(orjson.dumps(rec) + b"\n")


def burst_view(records: pl.DataFrame, window_s: float, top: float = 0.1) -> dict[str, Any]:
    """Latency inside the busiest ``top`` share of ``window_s`` windows (by arrivals)
    against the rest (mean and p99 E2E and TTFT, failure rate), and how long the
    engine took to recover after each burst (see :func:`recovery`)."""
    win = (records["arrival_s"] // window_s).cast(pl.Int64)
    counts = win.value_counts()
    cut = float(np.quantile(counts["count"].to_numpy(), 1 - top)) if counts.height else 0.0
    busy = sorted(counts.filter(pl.col("count") >= cut)[win.name].to_list())
    inside = win.is_in(busy)
    out: dict[str, Any] = {"window_s": window_s, "busy_windows": len(busy)}
    for name, part in (("burst", records.filter(inside)), ("rest", records.filter(~inside))):
        ok = part.filter(pl.col("outcome") == "ok")
        out[name] = {
            "requests": part.height,
            "failure_rate": 1 - ok.height / part.height if part.height else None,
            "e2e_mean_s": ok["e2e_s"].mean(),
            "e2e_p99_s": ok["e2e_s"].quantile(0.99),
            "ttft_mean_s": ok["ttft_s"].mean(),
            "ttft_p99_s": ok["ttft_s"].quantile(0.99),
        }
    episodes: list[list[float]] = []
    for w in busy:
        if episodes and episodes[-1][1] == w * window_s:
            episodes[-1][1] = (w + 1) * window_s
        else:
            episodes.append([w * window_s, (w + 1) * window_s])
    out["recovery"] = recovery(records, [(a, b) for a, b in episodes], max(window_s / 10, 0.1))
    return out


def recovery(
    records: pl.DataFrame, bursts: list[tuple[float, float]], step_s: float
) -> dict[str, Any]:
    """Seconds from the end of each burst until requests are served as usual again.

    Requests are grouped by arrival into ``step_s`` windows. The baseline is the
    median, over windows outside every burst, of the window's TTFT p90 (failed
    requests count as infinitely slow). A window is *recovered* when its TTFT p90
    is at most ``max(2 x baseline, baseline + 0.05 s)``; a burst's recovery time is
    the start of the first recovered window at or after the burst's end, minus
    that end (0: the engine absorbed it), or None if none comes before the next
    burst or the end of the run. Resolution: ``step_s``.
    """
    ttft = np.where(
        (records["outcome"] == "ok").to_numpy(),
        records["ttft_s"].fill_null(np.inf).to_numpy(),
        np.inf,
    )
    step = np.floor(records["arrival_s"].to_numpy() / step_s).astype(np.int64)
    frame = pl.DataFrame({"step": step, "ttft": ttft})
    per = frame.group_by("step").agg(pl.col("ttft").quantile(0.9, "higher")).sort("step")
    starts = per["step"].to_numpy() * step_s
    p90 = per["ttft"].to_numpy()
    outside = np.ones(starts.size, dtype=bool)
    for a, b in bursts:
        outside &= ~((starts + step_s > a) & (starts < b))
    finite = p90[outside & np.isfinite(p90)]
    out: dict[str, Any] = {"step_s": step_s, "bursts": []}
    if finite.size == 0:
        out["baseline_ttft_p90_s"] = None
        return out
    base = float(np.median(finite))
    limit = max(2 * base, base + 0.05)
    out |= {"baseline_ttft_p90_s": base, "limit_s": limit}
    times: list[float | None] = []
    for i, (a, b) in enumerate(bursts):
        until = bursts[i + 1][0] if i + 1 < len(bursts) else math.inf
        after = (starts >= b - 1e-9) & (starts < until) & (p90 <= limit)
        seconds = max(0.0, round(float(starts[after][0] - b), 9)) if after.any() else None
        times.append(seconds)
        out["bursts"].append({"start_s": a, "end_s": b, "recovery_s": seconds})
    known = [t for t in times if t is not None]
    out["recovery_mean_s"] = float(np.mean(known)) if known else None
    out["recovery_max_s"] = max(known) if known else None
    out["not_recovered"] = len(times) - len(known)
    return out
