"""``burstlab bench``: run a workload against a server and keep every measurement.

The run directory (manifest, schedule, records as they end, summary) is written
through :class:`burstlab.results.rundir.RunDir`.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from burstlab.bench.backends import PATHS, Api, BodyBuilder, Forcing, default_forcing
from burstlab.bench.client import Clock, HttpTarget, Timeouts
from burstlab.bench.runner import Runner, Settings, make_schedule
from burstlab.core.errors import BurstlabError, InputError
from burstlab.core.loop import loop_version
from burstlab.core.loop import run as run_loop
from burstlab.results.manifest import Manifest, run_versions
from burstlab.results.records import Record, load_records
from burstlab.results.rundir import RunDir, RunResult
from burstlab.results.slo import SLO
from burstlab.results.summary import summarize
from burstlab.workload.prompts import make_synth


class BenchConfig(BaseModel):
    """Everything that shapes a run; saved (secrets redacted) in ``run.json``."""

    model_config = ConfigDict(extra="forbid")

    url: str
    api: Api = "completions"
    backend: str = "generic"
    model: str | None = None
    stream: bool = True
    forcing: Forcing | None = None
    prompt: Literal["ids", "text"] | None = None
    tokenizer: str | None = None
    seed: int = 0
    max_concurrency: int | None = Field(default=None, ge=1)
    max_lag_s: float | None = Field(default=None, gt=0)
    workers: int = Field(default=1, ge=1)
    timeout_s: float = Field(default=600.0, gt=0)
    idle_timeout_s: float = Field(default=60.0, gt=0)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    api_key_env: str = "OPENAI_API_KEY"
    headers: dict[str, str] = Field(default_factory=dict)
    insecure: bool = False
    slo: SLO | None = None

    def resolved_forcing(self) -> Forcing:
        return self.forcing or default_forcing(self.backend, self.api)

    def prompt_mode(self) -> Literal["ids", "text"]:
        """Token-id prompts are exact and cheap, but only completions servers of
        vLLM and SGLang take them; everything else gets text."""
        if self.prompt is not None:
            if self.prompt == "ids" and self.api == "chat":
                raise InputError("token-id prompts need --api completions", field="--prompt")
            return self.prompt
        return "ids" if self.api == "completions" and self.backend in ("vllm", "sglang") else "text"

    def redacted(self) -> dict[str, Any]:
        """The config as saved: header values hidden, credentials stripped from the URL."""
        data = self.model_dump(mode="json")
        data["headers"] = dict.fromkeys(self.headers, "<redacted>")
        parts = urlsplit(self.url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        data["url"] = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        return data


ProgressHook = Callable[[Record], None]


def bench(
    workload: pl.DataFrame,
    config: BenchConfig,
    run_dir: str | Path,
    *,
    progress: Any | None = None,
) -> RunResult:
    """Run ``workload`` against ``config.url`` and write the run directory.

    ``progress`` is an optional display with ``add(record)``/``start()``/``stop()``
    (the CLI passes its live view). Ctrl-C stops the run: requests in flight are
    recorded as cancelled, unsent ones as not_sent, and the summary is written.
    """
    with RunDir.create(run_dir) as out:
        return _bench(workload, config, out, progress)


def _bench(
    workload: pl.DataFrame, config: BenchConfig, out: RunDir, progress: Any | None
) -> RunResult:
    api_key = os.environ.get(config.api_key_env) or None
    headers = dict(config.headers)
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    if config.model is None:
        config = config.model_copy(update={"model": _first_model(config, headers)})
    config.prompt_mode()
    table = workload.with_row_index("request_id")
    out.write_schedule(table)
    manifest = Manifest(
        kind="bench",
        scheduled=table.height,
        slo=config.slo,
        config=config.redacted(),
        forcing=config.resolved_forcing().model_dump(),
        prompt_mode=config.prompt_mode(),
        versions=run_versions(aiohttp=aiohttp.__version__, loop=loop_version()),
        argv=[_redact_arg(a, [*headers.values(), api_key or ""]) for a in sys.argv],
    )
    out.write_manifest(manifest)

    status: Literal["complete", "interrupted"] = "complete"
    lead = 0.2 if config.workers == 1 else 0.0
    anchor: dict[str, int] = {}
    try:
        if progress is not None:
            progress.start(table.height)
        if config.workers == 1:

            def await_t0() -> int:
                anchor["t0_wall_ns"] = time.time_ns() + int(lead * 1e9)
                anchor["t0_perf_ns"] = time.perf_counter_ns() + int(lead * 1e9)
                return anchor["t0_perf_ns"]

            job = _Job(str(out.path), config.model_dump_json(), headers, manifest.run_id)
            health = [_execute(job, await_t0, progress)]
        else:
            health = _run_workers(
                out=out,
                config=config,
                headers=headers,
                run_id=manifest.run_id,
                anchor=anchor,
                progress=progress,
            )
    except KeyboardInterrupt:
        status = "interrupted"
        health = []
    finally:
        if progress is not None:
            progress.stop()
    result = load_records(out.records_path)
    summary = summarize(
        result,
        status=status,
        lost=table.height - result.height,
        slo=config.slo,
        health=health,
        max_concurrency=config.max_concurrency,
    )
    manifest = manifest.model_copy(
        update={
            "status": status,
            "t0_wall_ns": anchor.get("t0_wall_ns"),
            "t0_perf_ns": anchor.get("t0_perf_ns"),
            "ended_wall": time.time(),
            "counts": summary.counts,
            "lost": summary.lost,
        }
    )
    out.write_summary(summary, manifest, result)
    out.write_manifest(manifest)
    return RunResult(out.path, summary)


def _redact_arg(arg: str, secrets: list[str]) -> str:
    """A command-line word with secrets (header values, the API key, URL credentials) hidden."""
    if any(s and s in arg for s in secrets):
        return "<redacted>"
    parts = urlsplit(arg) if "://" in arg else None
    if parts is not None and (parts.username or parts.password):
        return "<redacted>"
    return arg


def _first_model(config: BenchConfig, headers: dict[str, str]) -> str:
    """The first model the server lists at ``/v1/models``."""

    async def ask() -> str:
        url = config.url.rstrip("/") + "/v1/models"
        ssl_arg = not config.insecure
        timeout = aiohttp.ClientTimeout(total=config.connect_timeout_s + 10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers=headers, ssl=ssl_arg, allow_redirects=False) as resp,
        ):
            if resp.status != 200:
                raise BurstlabError(f"{url} answered HTTP {resp.status}", hint="pass --model NAME")
            data = orjson.loads(await resp.content.read(1 << 20))
        models = data.get("data") if isinstance(data, dict) else None
        if not models or not isinstance(models[0], dict) or "id" not in models[0]:
            raise BurstlabError(f"{url} lists no models", hint="pass --model NAME")
        return str(models[0]["id"])

    try:
        return run_loop(ask())
    except (TimeoutError, OSError, aiohttp.ClientError) as exc:
        raise BurstlabError(
            f"cannot reach {config.redacted()['url']}: {exc}",
            hint="check --url, or start a server with `burstlab serve --fixed ...`",
        ) from None


def _settings(config: BenchConfig, run_id: str) -> Settings:
    assert config.model is not None
    builder = BodyBuilder(config.api, config.model, config.resolved_forcing(), stream=config.stream)
    synth = make_synth(config.prompt_mode(), tokenizer=config.tokenizer, seed=config.seed)
    return Settings(
        api=config.api,
        builder=builder,
        synth=synth,
        run_id=run_id,
        max_concurrency=config.max_concurrency,
        max_lag_s=config.max_lag_s,
    )


def _target(config: BenchConfig, headers: dict[str, str], clock: Clock) -> HttpTarget:
    return HttpTarget(
        config.url,
        PATHS[config.api],
        clock,
        headers=headers,
        timeouts=Timeouts(
            connect=config.connect_timeout_s,
            idle=config.idle_timeout_s,
            total=config.timeout_s,
        ),
        insecure=config.insecure,
        stream=config.stream,
    )


@dataclass(frozen=True, slots=True)
class _Job:
    """One client process's part of a run: every ``workers``-th root of the schedule."""

    out: str
    config_json: str
    headers: dict[str, str]
    run_id: str
    worker: int = 0
    workers: int = 1


def _execute(job: _Job, await_t0: Callable[[], int], progress: Any | None = None) -> dict[str, Any]:
    """Run one job on a fresh event loop, appending to the shared records file; return
    the client-health readings. ``await_t0`` is called once everything is ready and
    returns ``t0`` (``perf_counter_ns``; the same clock in every process)."""
    config = BenchConfig.model_validate_json(job.config_json)
    run = RunDir(job.out)
    table = run.schedule()
    assert table is not None, "the schedule is written before any worker starts"
    schedule = make_schedule(table)
    settings = _settings(config, job.run_id)
    writer = run.records_writer()
    roots = schedule.roots[job.worker :: job.workers]

    async def main() -> dict[str, Any]:
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
            await runner.run(tick=progress.refresh if progress is not None else None)
            return runner.health.as_dict()

    try:
        return run_loop(main())
    finally:
        gc.unfreeze()
        writer.close()


def _worker_main(job: _Job, ready: Any, start: Any, done: Any) -> None:
    """A worker process: report ready, wait for the shared ``t0``, run, report health."""

    def await_t0() -> int:
        ready.put(job.worker)
        return int(start.get())

    health: dict[str, Any] = {}
    try:
        health = _execute(job, await_t0)
    except KeyboardInterrupt:
        health = {}
    finally:
        done.put(health)


def _run_workers(
    *,
    out: RunDir,
    config: BenchConfig,
    headers: dict[str, str],
    run_id: str,
    anchor: dict[str, int],
    progress: Any | None,
) -> list[dict[str, Any]]:
    ctx = mp.get_context("spawn")
    ready, start, done = ctx.Queue(), ctx.Queue(), ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker_main,
            args=(
                _Job(str(out.path), config.model_dump_json(), headers, run_id, k, config.workers),
                ready,
                start,
                done,
            ),
            daemon=True,
        )
        for k in range(config.workers)
    ]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            _wait_for(ready, procs)
        t0 = time.perf_counter_ns() + 200_000_000
        anchor["t0_perf_ns"] = t0
        anchor["t0_wall_ns"] = time.time_ns() + 200_000_000
        for _ in procs:
            start.put(t0)
        tail = _Tail(out.records_path)
        health: list[dict[str, Any]] = []
        while len(health) < len(procs):
            with contextlib.suppress(Exception):
                health.append(done.get(timeout=0.5))
            if progress is not None:
                for row in tail.read():
                    progress.add(row)
                progress.refresh()
            if not any(p.is_alive() for p in procs) and done.empty():
                break
        return health
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()


def _wait_for(queue: Any, procs: list[Any], timeout: float = 120.0) -> Any:
    """The next item of ``queue``; an error if a worker died or none came in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
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
