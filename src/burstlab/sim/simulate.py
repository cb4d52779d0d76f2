"""Run a workload through a simulated replica and write a run directory ``report`` reads.

The simulated client is perfect: every request is sent at its intended time
(schedule lag 0), so ``ttft`` and ``ttft_intended`` agree. The results go to
``requests.parquet`` (:mod:`burstlab.results.requests`), one row per request built
from the engine's arrays, and every outcome reads as ``bench``'s records name it
(:data:`FATES`). Token times are kept only when asked (``token_times=True``); the
summary's ``token_times`` says which.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from burstlab.results.bursts import burst_view
from burstlab.results.manifest import Manifest
from burstlab.results.requests import Fate, requests_table, result_table, summary_view
from burstlab.results.rundir import RunDir, RunResult
from burstlab.results.slo import SLO
from burstlab.results.summary import EngineStats, summarize
from burstlab.results.telemetry import telemetry_table
from burstlab.sim.engine import TELEMETRY_COLUMNS, Engine, SimResult
from burstlab.sim.engine.result import (
    CLIENT_TIMEOUT,
    LOAD_COLUMNS,
    OK,
    PENDING,
    PREEMPTED,
    REJECTED,
    TIMED_OUT,
)
from burstlab.sim.fleet import Fleet
from burstlab.sim.utilisation import streamed_utilisation, utilisation

#: How each outcome code of the engine reads in a run's results, as a client of a real
#: server would have seen it. A request preempted too often is aborted by the server:
#: a 500 with subkind ``preempted``.
FATES: dict[int, Fate] = {
    OK: Fate("ok", http_status=200),
    REJECTED: Fate(
        "failed",
        "http_429",
        "queue_full",
        429,
        "the engine's waiting queue was full, or the request could never fit",
    ),
    TIMED_OUT: Fate(
        "failed", "timeout", "queue", None, "waited in the engine's queue past its timeout"
    ),
    CLIENT_TIMEOUT: Fate(
        "failed", "timeout", "total", None, "the client gave up at arrival + client_timeout_s"
    ),
    PREEMPTED: Fate(
        "failed",
        "http_5xx",
        "preempted",
        500,
        "the engine aborted it after more than max_preemptions preemptions",
    ),
    PENDING: Fate(
        "failed", "internal", "unfinished", None, "the simulation ended before this request"
    ),
}

#: The columns :func:`burst_view` reads: it filters its table twice, and copying every
#: column of millions of requests would cost more than the view itself.
BURST_COLUMNS = ("arrival_s", "outcome", "ttft_s", "e2e_s")

#: The telemetry columns that count (stored as int32; times and work sums as float64).
TELEMETRY_COUNTS = frozenset(
    {"iterations", "batch", "prefill_tokens", "running", "waiting", "kv_blocks", "preemptions"}
)

#: ``progress(requests ended so far)``, called now and then while the engine runs.
Progress = Callable[[int], None]


def simulate(
    workload: pl.DataFrame,
    engine: Engine | Fleet,
    run_dir: str | Path,
    *,
    description: dict[str, Any] | None = None,
    slo: SLO | None = None,
    token_times: bool = False,
    progress: Progress | None = None,
) -> RunResult:
    """Simulate ``workload`` (a request table; ``arrival_s`` = send time) on
    ``engine`` and write a run directory: ``requests.parquet``, the engine's
    telemetry, the summary and manifest (see :mod:`burstlab.results.rundir`).

    ``description`` (the engine spec as the user gave it) is saved in the manifest.
    ``token_times`` keeps every token's time in ``requests.parquet`` (exact ITL;
    memory and disk grow with the tokens). ``progress`` is told how many requests
    have ended now and then (one replica only: a cluster runs without it).
    """
    with RunDir.create(run_dir, records=False) as out:
        return simulate_into(
            out,
            workload,
            engine,
            description=description,
            slo=slo,
            token_times=token_times,
            progress=progress,
        )[0]


def simulate_into(
    out: RunDir,
    workload: pl.DataFrame,
    engine: Engine | Fleet,
    *,
    description: dict[str, Any] | None = None,
    slo: SLO | None = None,
    token_times: bool = False,
    progress: Progress | None = None,
) -> tuple[RunResult, SimResult]:
    """:func:`simulate` into an open run directory; also returns the engine's raw result."""
    table = workload
    if not table["arrival_s"].is_sorted():
        table = table.sort("arrival_s", maintain_order=True)
    manifest = Manifest(
        kind="simulate",
        scheduled=table.height,
        slo=slo,
        engine=description or {"config": engine.cfg.model_dump()},
    )
    out.write_manifest(manifest)
    started = time.perf_counter()
    single = engine if isinstance(engine, Engine) else None
    sink = (
        out.telemetry_writer((*TELEMETRY_COLUMNS, *LOAD_COLUMNS), TELEMETRY_COUNTS)
        if single is not None
        else None
    )
    try:
        result = run_engine(
            engine, table, token_times=token_times, progress=progress, telemetry_sink=sink
        )
    except BaseException:
        if sink is not None:
            sink.discard()
        raise
    seconds = time.perf_counter() - started
    if sink is not None and single is not None:  # one engine streamed its telemetry
        used = streamed_utilisation(pl.scan_parquet(sink.close()), single.cost)
    else:
        out.write_telemetry(telemetry_frame(result))
        fleet = engine.engine if isinstance(engine, Fleet) else engine
        used = utilisation(result, fleet.cost)
    if used is not None:
        out.write_utilisation(used.table())
    stored = requests_table(
        table,
        FATES,
        result.outcome,
        first_s=result.first,
        end_s=result.end,
        admitted_s=result.admitted,
        preemptions=result.preemptions,
        tokens=result.tokens,
        max_gap_s=result.max_gap,
        token_lists=result.token_lists() if token_times and result.has_token_times else None,
    )
    out.write_requests(stored)
    records = summary_view(result_table(stored))
    del stored
    span = float(table["arrival_s"].max() or 0.0)  # type: ignore[arg-type]
    summary = summarize(
        records,
        slo=slo,
        burst=burst_view(records.select(BURST_COLUMNS), max(1.0, span / 30)),
        engine=EngineStats(
            iterations=result.iterations,
            steps=result.steps or int(result.telemetry.shape[0]),
            preemptions=int(result.preemptions.sum()),
            wall_s=seconds,
            utilisation=used.stats() if used is not None else None,
        ),
    ).model_copy(update={"token_times": token_times and result.has_token_times})
    manifest = manifest.model_copy(
        update={"status": "complete", "ended_wall": time.time(), "counts": summary.counts}
    )
    out.write_summary(summary, manifest, records)
    out.write_manifest(manifest)
    return RunResult(out.path, summary), result


def run_engine(
    engine: Engine | Fleet,
    table: pl.DataFrame,
    *,
    token_times: bool = False,
    progress: Progress | None = None,
    telemetry_sink: Callable[[np.ndarray], None] | None = None,
) -> SimResult:
    """Run ``table`` (sorted by arrival) through ``engine``. A single replica keeps token
    times only if asked, reports progress and hands its telemetry to ``telemetry_sink``
    in chunks (keeping none) when given one; a cluster keeps both always and runs
    without progress."""
    arrival = table["arrival_s"].to_numpy()
    inputs = table["input_tokens"].to_numpy()
    outputs = table["output_tokens"].to_numpy()
    if isinstance(engine, Engine):
        return engine.run(
            arrival,
            inputs,
            outputs,
            token_times=token_times,
            progress=progress,
            telemetry_sink=telemetry_sink,
        )
    return engine.run(arrival, inputs, outputs)


def telemetry_frame(result: SimResult) -> pl.DataFrame:
    """The engine's telemetry as a table: :data:`TELEMETRY_COLUMNS`, the work of each
    row (:data:`LOAD_COLUMNS`) when the engine recorded it, and the replica of each
    row for a cluster (counts as int32, as :class:`TelemetryWriter` stores them)."""
    t = result.telemetry
    frame = telemetry_table(t, TELEMETRY_COLUMNS, TELEMETRY_COUNTS)
    load = result.load
    if load.ndim == 2 and load.shape == (t.shape[0], len(LOAD_COLUMNS)) and t.shape[0]:
        frame = frame.with_columns(
            pl.Series(name, np.ascontiguousarray(load[:, k])) for k, name in enumerate(LOAD_COLUMNS)
        )
    if result.replica is not None:
        frame = frame.with_columns(pl.Series("replica", result.replica))
    return frame
