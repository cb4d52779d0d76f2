"""``burstlab bench``: run a workload against a server and keep every measurement.

The run directory (manifest, schedule, records as they end, summary) is written
through :class:`burstlab.results.rundir.RunDir`. Everything that can be checked
before a run (the URL, headers, the API key, the tokenizer, the server's model
list) is checked before the directory is created, so bad input leaves nothing
behind. Once it runs, SIGINT and SIGTERM stop it the same way: no new sends, a
grace period for requests in flight, then cancellation; the summary is written
either way. A records write that fails (a full disk) stops sending at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import aiohttp
import polars as pl

from burstlab.bench.config import BenchConfig, Prepared, prepare, redact_argv, redact_text
from burstlab.bench.runner import write_failure
from burstlab.bench.server_metrics import METRICS_FILE, scraping
from burstlab.bench.stop import StopState, process_signals
from burstlab.bench.warmup import warm_up
from burstlab.bench.workers import Job, Outcome, execute, run_workers
from burstlab.core.errors import BurstlabError
from burstlab.core.loop import loop_version
from burstlab.results.manifest import Manifest, run_versions
from burstlab.results.records import Record, load_records
from burstlab.results.rundir import RunDir, RunResult
from burstlab.results.summary import StoppedBy, summarize

if TYPE_CHECKING:
    from burstlab.bench.ray_executor import RayCluster

__all__ = ["BenchConfig", "RunWriteError", "bench"]

ProgressHook = Callable[[Record], None]


class RunWriteError(BurstlabError):
    """The run directory could not be written (the disk is full, or another
    ``OSError``); ``reason`` is ``disk_full`` or ``write_error``."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message, hint="free some disk space, or pass a run directory elsewhere")
        self.reason = reason


def bench(
    workload: pl.DataFrame,
    config: BenchConfig,
    run_dir: str | Path,
    *,
    progress: Any | None = None,
    notify: Callable[[str], None] | None = None,
) -> RunResult:
    """Run ``workload`` against ``config.url`` and write the run directory.

    Bad input raises an :class:`InputError` before the directory is created
    (:func:`prepare`). ``progress`` is an optional display with
    ``add(record)``/``start()``/``stop()`` (the CLI passes its live view);
    ``notify`` is told, in a sentence, when a signal stops the run (it may be
    called from a signal handler: it must not take locks) and how the warm-up went
    (``config.warmup``: requests sent before ``t0``, kept in ``warmup.jsonl``).
    With ``config.wait_ready_s`` the server is polled until it is ready first.

    SIGINT (Ctrl-C) and SIGTERM stop the run alike: nothing more is sent, requests
    in flight may finish for ``config.grace_s`` seconds, then they are cancelled (at
    once on a second signal); the summary says ``interrupted`` and which signal
    (``stopped_by``). A failed records write (a full disk) stops sending at once and
    the result carries ``write_error``. An error once the directory exists marks
    the manifest ``failed`` with the reason and is raised.
    """
    ready = prepare(config, notify)
    cluster = None
    if config.executor == "ray":
        from burstlab.bench.ray_executor import connect  # noqa: PLC0415 - imports ray

        cluster = connect(ready.config)
        # run.json says how many actors ran, also when the cluster's CPUs chose it
        config = ready.config.model_copy(update={"workers": cluster.actors})
        ready = dataclasses.replace(ready, config=config)
    try:
        with RunDir.create(run_dir) as out:
            return _bench(workload, ready, out, progress, notify, cluster=cluster)
    finally:
        if cluster is not None:
            cluster.close()


def _bench(
    workload: pl.DataFrame,
    ready: Prepared,
    out: RunDir,
    progress: Any | None,
    notify: Callable[[str], None] | None,
    *,
    cluster: RayCluster | None = None,
) -> RunResult:
    config = ready.config
    table = workload.with_row_index("request_id")
    manifest = Manifest(
        kind="bench",
        scheduled=table.height,
        slo=config.slo,
        config=config.redacted(),
        forcing=config.resolved_forcing().model_dump(),
        prompt_mode=config.prompt_mode(),
        versions=run_versions(aiohttp=aiohttp.__version__, loop=loop_version()),
        argv=redact_argv(sys.argv, ready.secrets),
    )
    stop = StopState(notify=notify, grace_s=config.grace_s)
    anchor: dict[str, Any] = {}
    try:
        with process_signals(stop, (signal.SIGINT, signal.SIGTERM)):
            out.write_schedule(table)
            out.write_manifest(manifest)
            if config.warmup:
                done = warm_up(workload, ready, out, stop, manifest.run_id)
                if notify is not None:
                    notify(done.line())
            with scraping(
                config.url, out.file(METRICS_FILE), config.scrape_metrics_s, ready.headers
            ):
                outcomes = _run(
                    out,
                    ready,
                    manifest,
                    stop=stop,
                    anchor=anchor,
                    progress=progress,
                    cluster=cluster,
                    notify=notify,
                )
            return _finish(out, ready, manifest, outcomes, stop=stop, anchor=anchor)
    except BaseException as exc:
        _mark_failed(out, manifest, exc, ready.secrets)
        if isinstance(exc, OSError):
            raise RunWriteError(
                f"cannot write the run directory {out.path}: {exc.strerror or exc}",
                reason=write_failure(exc),
            ) from None
        raise


def _run(
    out: RunDir,
    ready: Prepared,
    manifest: Manifest,
    *,
    stop: StopState,
    anchor: dict[str, Any],
    progress: Any | None,
    cluster: RayCluster | None = None,
    notify: Callable[[str], None] | None = None,
) -> list[Outcome]:
    config, run_id = ready.config, manifest.run_id
    if progress is not None:
        progress.start(manifest.scheduled)
    try:
        if cluster is not None:
            from burstlab.bench.ray_executor import run_ray  # noqa: PLC0415 - imports ray

            return run_ray(
                out=out,
                ready=ready,
                manifest=manifest,
                cluster=cluster,
                stop=stop,
                anchor=anchor,
                progress=progress,
                notify=notify,
            )
        if config.workers > 1:
            return run_workers(
                out=out, ready=ready, run_id=run_id, stop=stop, anchor=anchor, progress=progress
            )
        lead = 0.2

        def await_t0() -> int:
            anchor["t0_wall_ns"] = time.time_ns() + int(lead * 1e9)
            t0: int = time.perf_counter_ns() + int(lead * 1e9)
            anchor["t0_perf_ns"] = t0
            return t0

        job = Job(str(out.path), config.model_dump_json(), ready.headers, run_id)
        return [execute(job, await_t0, stop, (signal.SIGINT, signal.SIGTERM), progress)]
    finally:
        if progress is not None:
            progress.stop()


def _finish(
    out: RunDir,
    ready: Prepared,
    manifest: Manifest,
    outcomes: list[Outcome],
    *,
    stop: StopState,
    anchor: dict[str, Any],
) -> RunResult:
    """Summarize the records and write the summary files and the final manifest. A
    write failure (during the run or now) is reported in the result, not raised."""
    config = ready.config
    scheduled = manifest.scheduled
    failed = next((o for o in outcomes if o.write_error is not None), None)
    reasons = [failed.stopped_by if failed else None, stop.reason]
    reasons += [o.stopped_by for o in outcomes]
    stopped_by = cast("StoppedBy | None", next((r for r in reasons if r), None))
    write_error = None
    if failed is not None:
        write_error = f"cannot write {out.records_path}: {failed.write_error}"
        out.release_reserve()
    status: Literal["complete", "interrupted"] = "interrupted" if stopped_by else "complete"
    result = load_records(out.records_path)
    summary = summarize(
        result,
        status=status,
        stopped_by=stopped_by,
        lost=scheduled - result.height,
        slo=config.slo,
        health=[o.health for o in outcomes],
        max_concurrency=config.max_concurrency,
    )
    manifest = manifest.model_copy(
        update={
            "status": status,
            "reason": stopped_by,
            "t0_wall_ns": anchor.get("t0_wall_ns"),
            "t0_perf_ns": anchor.get("t0_perf_ns"),
            "cluster": anchor.get("cluster"),
            "ended_wall": time.time(),
            "counts": summary.counts,
            "lost": summary.lost,
        }
    )
    out.release_reserve()
    try:
        out.write_summary(summary, manifest, result)
        out.write_manifest(manifest)
    except OSError as exc:
        write_error = write_error or f"cannot write the summary in {out.path}: {exc.strerror}"
    return RunResult(out.path, summary, write_error=write_error)


def _mark_failed(
    out: RunDir, manifest: Manifest, exc: BaseException, secrets: tuple[str, ...]
) -> None:
    """Best effort: the manifest says ``failed`` and why, so the directory is not left
    looking like a run in progress."""
    text = str(exc) if isinstance(exc, BurstlabError) else f"{type(exc).__name__}: {exc}"
    failed = manifest.model_copy(
        update={"status": "failed", "reason": redact_text(text, secrets), "ended_wall": time.time()}
    )
    out.release_reserve()
    with contextlib.suppress(OSError):
        out.write_manifest(failed)
