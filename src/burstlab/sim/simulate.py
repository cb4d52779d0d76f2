"""Run a workload through a simulated replica and write a run directory like ``bench``'s.

The simulated client is perfect: every request is sent at its intended time
(schedule lag 0), so ``ttft`` and ``ttft_intended`` agree. Requests the engine
refuses because its queue is full are ``http_429`` failures at their arrival;
requests that waited past the queue timeout are ``timeout`` failures (subkind
``queue``), as a real server's client would see them.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import polars as pl

from burstlab.analyze.results import SLO, summarize
from burstlab.core.files import atomic_file, write_json
from burstlab.core.version import __version__
from burstlab.sim.engine import OK, REJECTED, TELEMETRY_COLUMNS, TIMED_OUT, Engine, SimResult
from burstlab.sim.fleet import Fleet
from burstlab.trace.io import write_table
from burstlab.trace.records import Record, load_records, new_records_file


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
    against the rest: mean and p99 E2E and TTFT, failure rate."""
    win = (records["arrival_s"] // window_s).cast(pl.Int64)
    counts = win.value_counts()
    cut = float(np.quantile(counts["count"].to_numpy(), 1 - top)) if counts.height else 0.0
    busy = set(counts.filter(pl.col("count") >= cut)[win.name].to_list())
    inside = win.is_in(list(busy))
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
    return out
