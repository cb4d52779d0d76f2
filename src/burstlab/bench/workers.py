"""Client processes: run a share of the schedule on an event loop, in one or several processes."""

from __future__ import annotations

import contextlib
import gc
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from burstlab.bench.backends import (
    PATHS,
    BodyBuilder,
    Builder,
    backend_extra,
    backend_keepalive_s,
)
from burstlab.bench.client import Clock, HttpTarget, Timeouts
from burstlab.bench.config import BenchConfig, Prepared
from burstlab.bench.native import NativeBodyBuilder, Params
from burstlab.bench.runner import Runner, Schedule, Settings, make_schedule, write_failure
from burstlab.bench.stop import StopState, ignoring, loop_signals, process_signals
from burstlab.core.errors import BurstlabError
from burstlab.core.loop import run as run_loop
from burstlab.results.records import Record, RecordSink
from burstlab.results.rundir import RunDir


def _builder(config: BenchConfig) -> Builder:
    """The body builder: the backend's native dialect for ``--api generate``, else ``/v1``."""
    if config.api == "generate":
        params = Params(config.resolved_forcing(), config.temperature)
        return NativeBodyBuilder(config.dialect(), params, stream=config.stream)
    assert config.model is not None
    return BodyBuilder(
        config.api,
        config.model,
        config.resolved_forcing(),
        stream=config.stream,
        extra=backend_extra(config.backend),
        temperature=config.temperature,
    )


def _settings(config: BenchConfig, run_id: str, headers: dict[str, str]) -> Settings:
    builder = _builder(config)
    synth = config.synth(headers)
    return Settings(
        api=config.api,
        builder=builder,
        synth=synth,
        run_id=run_id,
        max_concurrency=config.max_concurrency,
        max_lag_s=config.max_lag_s,
        grace_s=config.grace_s,
        max_output_tokens=config.max_output_tokens,
    )


def _target(config: BenchConfig, headers: dict[str, str], clock: Clock) -> HttpTarget:
    dialect = config.dialect() if config.api == "generate" else None
    return HttpTarget(
        config.url,
        PATHS[config.api] if dialect is None else dialect.path(config.stream),
        clock,
        headers=headers,
        timeouts=Timeouts(
            connect=config.connect_timeout_s,
            idle=config.idle_timeout_s,
            total=config.timeout_s,
        ),
        insecure=config.insecure,
        stream=config.stream,
        keepalive_s=backend_keepalive_s(config.backend),
        dialect=dialect,
    )


@dataclass(frozen=True, slots=True)
class Job:
    """One client process's part of a run: every ``workers``-th root of the schedule."""

    out: str
    config_json: str
    headers: dict[str, str]
    run_id: str
    worker: int = 0
    workers: int = 1

    def roots(self, schedule: Schedule) -> list[int]:
        """This part's roots: every ``workers``-th, so a session stays on one worker."""
        return schedule.roots[self.worker :: self.workers]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one client process's part ended: its health readings, why it stopped
    early (if it did), and the records write error that stopped it (if one did)."""

    health: dict[str, Any] = field(default_factory=dict)
    stopped_by: str | None = None
    write_error: str | None = None


def execute(
    job: Job,
    await_t0: Callable[[], int],
    stop: StopState,
    signals: tuple[int, ...],
    progress: Any | None = None,
    *,
    table: pl.DataFrame | None = None,
    writer: RecordSink | None = None,
    attach: Callable[[Runner], None] | None = None,
) -> Outcome:
    """Run one job on a fresh event loop, appending to the shared records file.
    ``await_t0`` is called once everything is ready and returns ``t0``
    (``perf_counter_ns``; the same clock in every process). ``signals`` stop the
    runner (see :func:`loop_signals`); a stop requested before the loop started
    (``stop``) is applied before the first send.

    Where the run directory is not on this machine (a Ray actor), ``table`` is the
    schedule and ``writer`` takes the records instead, and ``attach`` is handed the
    runner on its loop before the first send (to stop it from another thread)."""
    config = BenchConfig.model_validate_json(job.config_json)
    if table is None:
        table = RunDir(job.out).schedule()
    assert table is not None, "the schedule is written before any worker starts"
    schedule = make_schedule(table)
    settings = _settings(config, job.run_id, job.headers)
    if writer is None:
        writer = RunDir(job.out).records_writer()
    roots = job.roots(schedule)

    async def main() -> Outcome:
        # What exists now lives for the whole run: keep the collector from walking
        # it again and again (its pauses would show as schedule lag). Before t0.
        gc.collect()
        gc.freeze()
        clock = Clock(await_t0())
        async with _target(config, job.headers, clock) as target:
            runner = Runner(
                schedule,
                roots,
                target,
                writer=writer,
                settings=settings,
                clock=clock,
                worker=job.worker,
                on_record=progress.add if progress is not None else None,
                on_dispatch=progress.sent_one if progress is not None else None,
            )
            if attach is not None:
                attach(runner)
            with loop_signals(stop, runner, signals):
                if stop.sync():
                    runner.stop(stop.reason or "sigint", now=stop.level >= 2)
                await runner.run(tick=progress.refresh if progress is not None else None)
            error = runner.write_error
            return Outcome(
                health=runner.health.as_dict(),
                stopped_by=runner.stopped_by,
                write_error=(error.strerror or str(error)) if error is not None else None,
            )

    try:
        outcome = run_loop(main())
    finally:
        gc.unfreeze()
    try:
        writer.close()
    except OSError as exc:
        if outcome.write_error is None:
            reason = write_failure(exc)
            return Outcome(outcome.health, reason, exc.strerror or str(exc))
    return outcome


def _worker_main(job: Job, shared: Any, ready: Any, start: Any, done: Any) -> None:
    """A worker process: report ready, wait for the shared ``t0``, run, report how it
    ended. SIGINT is ignored (inherited from the parent, which forwards every stop
    as SIGTERM), so one Ctrl-C at a terminal counts once."""
    stop = StopState(shared)
    signal.signal(signal.SIGTERM, lambda signum, _frame: stop.request(signum))

    def await_t0() -> int:
        ready.put(job.worker)
        return int(start.get())

    outcome = Outcome()
    try:
        outcome = execute(job, await_t0, stop, (signal.SIGTERM,))
    finally:
        done.put(outcome)


def run_workers(
    *,
    out: RunDir,
    ready: Prepared,
    run_id: str,
    stop: StopState,
    anchor: dict[str, int],
    progress: Any | None,
) -> list[Outcome]:
    """Run the job in ``workers`` spawned processes sharing one ``t0``. A stop (a
    signal to this process, or a worker whose records write failed) is passed on to
    every worker that is ready for it: the level in ``shared``, then a SIGTERM."""
    config = ready.config
    ctx = mp.get_context("spawn")
    shared = ctx.RawValue("i", 0)
    ready_q, start, done = ctx.Queue(), ctx.Queue(), ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker_main,
            args=(
                Job(
                    str(out.path),
                    config.model_dump_json(),
                    ready.headers,
                    run_id,
                    k,
                    config.workers,
                ),
                shared,
                ready_q,
                start,
                done,
            ),
            daemon=True,
        )
        for k in range(config.workers)
    ]
    started: set[int] = set()

    def forward(level: int | None = None) -> None:
        shared.value = max(int(shared.value), level if level is not None else stop.level)
        for k in sorted(started):
            if procs[k].is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(procs[k].pid, signal.SIGTERM)  # type: ignore[arg-type]

    # The workers inherit an ignored SIGINT: a Ctrl-C reaches them only through forward().
    with ignoring(signal.SIGINT):
        for p in procs:
            p.start()
    try:
        with process_signals(stop, (signal.SIGINT, signal.SIGTERM), forward):
            while len(started) < len(procs) and not stop.level:
                worker = _wait_for(ready_q, procs, until=lambda: stop.level > 0)
                if worker is not None:
                    started.add(int(worker))
            t0 = time.perf_counter_ns() + 200_000_000
            anchor["t0_perf_ns"] = t0
            anchor["t0_wall_ns"] = time.time_ns() + 200_000_000
            for _ in procs:
                start.put(t0)
            if stop.level:
                forward()
            tail = _Tail(out.records_path)
            outcomes: list[Outcome] = []
            while len(outcomes) < len(procs):
                with contextlib.suppress(Exception):
                    while True:
                        started.add(int(ready_q.get_nowait()))
                with contextlib.suppress(Exception):
                    outcome = done.get(timeout=0.5)
                    outcomes.append(outcome)
                    if outcome.write_error is not None:
                        forward(2)  # the disk is full for every worker: stop them all now
                if progress is not None:
                    for row in tail.read():
                        progress.add(row)
                    progress.refresh()
                if not any(p.is_alive() for p in procs) and done.empty():
                    break
            return outcomes
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()


def _wait_for(
    queue: Any, procs: list[Any], timeout: float = 120.0, until: Callable[[], bool] | None = None
) -> Any:
    """The next item of ``queue``, or None once ``until()`` holds; an error if a
    worker died or none came in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if until is not None and until():
            return None
        with contextlib.suppress(Exception):
            return queue.get(timeout=0.2)
        dead = [p for p in procs if not p.is_alive() and p.exitcode not in (0, None)]
        if dead:
            raise BurstlabError(f"a client worker process died (exit code {dead[0].exitcode})")
    raise BurstlabError(f"client workers did not start within {timeout:g} s")


class _Tail:
    """New complete lines of a growing JSONL file, as records for the progress view."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.rest = b""

    def read(self) -> list[Record]:
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        self.offset += len(data)
        lines = (self.rest + data).split(b"\n")
        self.rest = lines.pop()
        out = []
        for line in lines:
            if line:
                row = orjson.loads(line)
                out.append(Record(**{k: row[k] for k in row if k in Record.__slots__}))
        return out
