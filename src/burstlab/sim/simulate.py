"""Run a workload through a simulated replica and write a run directory like ``bench``'s.

The simulated client is perfect: every request is sent at its intended time
(schedule lag 0), so ``ttft`` and ``ttft_intended`` agree. Requests the engine
refuses because its queue is full are ``http_429`` failures at their arrival;
requests that waited past the queue timeout are ``timeout`` failures (subkind
``queue``), as a real server's client would see them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from burstlab.results.bursts import burst_view
from burstlab.results.manifest import Manifest
from burstlab.results.records import Record, load_records
from burstlab.results.rundir import RunDir, RunResult
from burstlab.results.slo import SLO
from burstlab.results.summary import EngineStats, summarize
from burstlab.sim.engine import OK, REJECTED, TELEMETRY_COLUMNS, TIMED_OUT, Engine, SimResult
from burstlab.sim.fleet import Fleet


def simulate(
    workload: pl.DataFrame,
    engine: Engine | Fleet,
    run_dir: str | Path,
    *,
    description: dict[str, Any] | None = None,
    slo: SLO | None = None,
) -> RunResult:
    """Simulate ``workload`` (a request table; ``arrival_s`` = send time) on
    ``engine`` and write a run directory like ``bench``'s, plus the engine's
    telemetry (see :mod:`burstlab.results.rundir`).

    ``description`` (the engine spec as the user gave it) is saved in the manifest.
    """
    with RunDir.create(run_dir) as out:
        return simulate_into(out, workload, engine, description=description, slo=slo)[0]


def simulate_into(
    out: RunDir,
    workload: pl.DataFrame,
    engine: Engine | Fleet,
    *,
    description: dict[str, Any] | None = None,
    slo: SLO | None = None,
) -> tuple[RunResult, SimResult]:
    """:func:`simulate` into an open run directory; also returns the engine's raw result."""
    table = workload.sort("arrival_s", maintain_order=True)
    out.write_schedule(table)
    manifest = Manifest(
        kind="simulate",
        scheduled=table.height,
        slo=slo,
        engine=description or {"config": engine.cfg.model_dump()},
    )
    out.write_manifest(manifest)
    started = time.perf_counter()
    result = engine.run(
        table["arrival_s"].to_numpy(),
        table["input_tokens"].to_numpy(),
        table["output_tokens"].to_numpy(),
    )
    seconds = time.perf_counter() - started
    out.write_records(record_lines(table, result))
    telemetry = pl.DataFrame(result.telemetry, schema=list(TELEMETRY_COLUMNS), orient="row")
    if result.replica is not None:
        telemetry = telemetry.with_columns(pl.Series("replica", result.replica))
    out.write_telemetry(telemetry)
    records = load_records(out.records_path)
    span = float(table["arrival_s"].max() or 0.0)  # type: ignore[arg-type]
    summary = summarize(
        records,
        slo=slo,
        burst=burst_view(records, max(1.0, span / 30)),
        engine=EngineStats(
            iterations=result.iterations,
            steps=int(result.telemetry.shape[0]),
            preemptions=int(result.preemptions.sum()),
            wall_s=seconds,
        ),
    )
    manifest = manifest.model_copy(
        update={"status": "complete", "ended_wall": time.time(), "counts": summary.counts}
    )
    out.write_summary(summary, manifest, records)
    out.write_manifest(manifest)
    return RunResult(out.path, summary), result


def record_lines(table: pl.DataFrame, result: SimResult) -> bytes:
    """One record per request, in the bench format (times in seconds from 0), as JSON lines."""
    arrival = table["arrival_s"].to_numpy()
    inputs = table["input_tokens"].to_list()
    outputs = table["output_tokens"].to_list()
    models = table["model"].cast(pl.String).to_list()
    logs = table["log_type"].cast(pl.String).to_list()
    sessions = table["session_id"].to_list()
    turns = table["turn"].to_list()
    lines: list[bytes] = []
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
        lines.append(orjson.dumps(rec) + b"\n")
    return b"".join(lines)
