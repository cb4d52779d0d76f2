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

import asyncio
import contextlib
import gc
import multiprocessing as mp
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from burstlab.bench.backends import PATHS, Api, BodyBuilder, Forcing, default_forcing
from burstlab.bench.client import Clock, HttpTarget, Timeouts
from burstlab.bench.runner import Runner, Settings, make_schedule, write_failure
from burstlab.core.errors import BurstlabError, InputError, invalid
from burstlab.core.loop import loop_version
from burstlab.core.loop import run as run_loop
from burstlab.results.manifest import Manifest, run_versions
from burstlab.results.records import Record, load_records
from burstlab.results.rundir import RunDir, RunResult
from burstlab.results.slo import SLO
from burstlab.results.summary import StoppedBy, summarize
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
    seed: int = Field(default=0, ge=0)
    max_concurrency: int | None = Field(default=None, ge=1)
    max_lag_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    workers: int = Field(default=1, ge=1)
    timeout_s: float = Field(default=600.0, gt=0, allow_inf_nan=False)
    idle_timeout_s: float = Field(default=60.0, gt=0, allow_inf_nan=False)
    connect_timeout_s: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    #: Seconds requests in flight may finish after a first Ctrl-C or SIGTERM.
    grace_s: float = Field(default=5.0, ge=0, allow_inf_nan=False)
    api_key_env: str = "OPENAI_API_KEY"
    headers: dict[str, str] = Field(default_factory=dict)
    insecure: bool = False
    slo: SLO | None = None

    @field_validator("headers")
    @classmethod
    def _headers_are_safe(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            check_header(name, value)
        return headers

    @classmethod
    def from_options(cls, **options: Any) -> BenchConfig:
        """The config from command-line values; a bad one is an :class:`InputError`
        naming its option (``--timeout: ...``)."""
        try:
            return cls(**options)
        except ValidationError as exc:
            raise invalid(exc, as_options=True) from None

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
        if ":" in netloc:  # an IPv6 address
            netloc = f"[{netloc}]"
        if parts.port:
            netloc += f":{parts.port}"
        data["url"] = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        return data


ProgressHook = Callable[[Record], None]

#: What stands in for a secret in every file and message.
REDACTED = "<redacted>"
#: A header name: an RFC 9110 token.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: Credentials in a URL (``scheme://user:password@``).
_URL_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")


class RunWriteError(BurstlabError):
    """The run directory could not be written (the disk is full, or another
    ``OSError``); ``reason`` is ``disk_full`` or ``write_error``."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message, hint="free some disk space, or pass a run directory elsewhere")
        self.reason = reason


def check_header(name: str, value: str) -> None:
    """Refuse a header that could not be sent as given: a name that is not a token,
    or a value holding CR, LF or another control character (header injection)."""
    if not _TOKEN.fullmatch(name):
        raise InputError(f"{name!r} is not a valid header name", field="--header")
    if any(ch != "\t" and (ord(ch) < 32 or ord(ch) == 127) for ch in value):
        raise InputError(
            f"the value of {name} holds a control character (CR, LF or another)",
            field="--header",
        )


def check_url(url: str) -> None:
    """Refuse a ``--url`` that is not ``http(s)://host[:port][/path]``, naming what is
    wrong (the message never repeats credentials)."""
    shown = _URL_CREDENTIALS.sub(rf"\1{REDACTED}@", url)
    hint = "e.g. --url http://127.0.0.1:8000"
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise InputError(f"{shown!r} holds a space or a control character", field="--url")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed [IPv6] bracket
        raise InputError(f"{shown!r} is not a URL: {exc}", field="--url", hint=hint) from None
    if parts.scheme not in ("http", "https"):
        raise InputError(f"{shown!r} is not an http:// or https:// URL", field="--url", hint=hint)
    if not parts.hostname:
        raise InputError(f"{shown!r} names no host", field="--url", hint=hint)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise InputError(f"{shown!r}: the port is not a number from 1 to 65535", field="--url")
    if parts.query or parts.fragment:
        raise InputError(f"{shown!r} has a query or fragment; give the base URL", field="--url")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A config checked and ready to run: the model resolved, the headers to send
    (``Authorization`` from the API key included) and every secret to keep out of
    files."""

    config: BenchConfig
    headers: dict[str, str]
    secrets: tuple[str, ...]


def prepare(config: BenchConfig) -> Prepared:
    """Check everything that can be checked before a run directory exists: the URL,
    the headers, that the API key, an ``Authorization`` header and URL credentials do
    not compete, the prompt mode and tokenizer, and (without ``model``) that the server
    answers with its model list. Each problem raises a :class:`BurstlabError` (an
    :class:`InputError` for bad input; a server that cannot be reached is not one)."""
    check_url(config.url)
    for name, value in config.headers.items():
        check_header(name, value)
    env = config.api_key_env
    api_key = os.environ.get(env) or None
    parts = urlsplit(config.url)
    in_url = parts.username is not None or parts.password is not None
    given = next((k for k in config.headers if k.lower() == "authorization"), None)
    both = "both set the Authorization header; give only one"
    if api_key is not None and given is not None:
        raise InputError(
            f"the API key in ${env} and --header {given} {both}",
            hint=f"unset {env} (or name another variable with --api-key-env), or drop the header",
        )
    if api_key is not None and in_url:
        raise InputError(
            f"the API key in ${env} and the credentials in --url {both}",
            hint=f"unset {env} (or name another variable with --api-key-env), "
            "or take the credentials out of the URL",
        )
    if given is not None and in_url:
        raise InputError(f"--header {given} and the credentials in --url {both}")
    headers = dict(config.headers)
    if api_key is not None:
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in api_key):
            raise InputError(f"the API key in ${env} holds a control character")
        headers["Authorization"] = f"Bearer {api_key}"
    secrets = [*config.headers.values(), api_key or "", parts.username or "", parts.password or ""]
    make_synth(config.prompt_mode(), tokenizer=config.tokenizer, seed=config.seed)
    if config.model is None:
        config = config.model_copy(update={"model": _first_model(config, headers)})
    return Prepared(config, headers, tuple(s for s in secrets if s))


def redact_text(text: str, secrets: tuple[str, ...] | list[str]) -> str:
    """``text`` with every secret and URL credentials replaced by ``<redacted>``.
    Secrets shorter than 4 characters are left: they cannot be told from other text
    (``--header`` values are redacted by position in :func:`redact_argv`)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    return _URL_CREDENTIALS.sub(rf"\1{REDACTED}@", text)


def redact_argv(argv: list[str], secrets: tuple[str, ...] | list[str]) -> list[str]:
    """The command line as saved in ``run.json``: every ``--header`` value hidden
    (the name kept), and secrets and URL credentials hidden in every word."""

    def header(word: str) -> str:
        name, sep, _ = word.partition(":")
        return f"{name.strip()}: {REDACTED}" if sep else REDACTED

    out: list[str] = []
    after_header = False
    for word in argv:
        if after_header:
            out.append(header(word))
            after_header = False
        elif word == "--header":
            out.append(word)
            after_header = True
        elif word.startswith("--header="):
            out.append("--header=" + header(word.removeprefix("--header=")))
        else:
            out.append(redact_text(word, secrets))
    return out


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
    called from a signal handler: it must not take locks).

    SIGINT (Ctrl-C) and SIGTERM stop the run alike: nothing more is sent, requests
    in flight may finish for ``config.grace_s`` seconds, then they are cancelled (at
    once on a second signal); the summary says ``interrupted`` and which signal
    (``stopped_by``). A failed records write (a full disk) stops sending at once and
    the result carries ``write_error``. An error once the directory exists marks
    the manifest ``failed`` with the reason and is raised.
    """
    ready = prepare(config)
    with RunDir.create(run_dir) as out:
        return _bench(workload, ready, out, progress, notify)


def _bench(
    workload: pl.DataFrame,
    ready: Prepared,
    out: RunDir,
    progress: Any | None,
    notify: Callable[[str], None] | None,
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
    stop = _StopState(notify=notify, grace_s=config.grace_s)
    anchor: dict[str, int] = {}
    try:
        with _process_signals(stop, (signal.SIGINT, signal.SIGTERM)):
            out.write_schedule(table)
            out.write_manifest(manifest)
            outcomes = _run(out, ready, manifest, stop=stop, anchor=anchor, progress=progress)
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
    stop: _StopState,
    anchor: dict[str, int],
    progress: Any | None,
) -> list[_Outcome]:
    config, run_id = ready.config, manifest.run_id
    if progress is not None:
        progress.start(manifest.scheduled)
    try:
        if config.workers > 1:
            return _run_workers(
                out=out, ready=ready, run_id=run_id, stop=stop, anchor=anchor, progress=progress
            )
        lead = 0.2

        def await_t0() -> int:
            anchor["t0_wall_ns"] = time.time_ns() + int(lead * 1e9)
            anchor["t0_perf_ns"] = time.perf_counter_ns() + int(lead * 1e9)
            return anchor["t0_perf_ns"]

        job = _Job(str(out.path), config.model_dump_json(), ready.headers, run_id)
        return [_execute(job, await_t0, stop, (signal.SIGINT, signal.SIGTERM), progress)]
    finally:
        if progress is not None:
            progress.stop()


def _finish(
    out: RunDir,
    ready: Prepared,
    manifest: Manifest,
    outcomes: list[_Outcome],
    *,
    stop: _StopState,
    anchor: dict[str, int],
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


def _first_model(config: BenchConfig, headers: dict[str, str]) -> str:
    """The first model the server lists at ``/v1/models``."""
    shown = str(config.redacted()["url"]).rstrip("/") + "/v1/models"

    async def ask() -> str:
        url = config.url.rstrip("/") + "/v1/models"
        ssl_arg = not config.insecure
        timeout = aiohttp.ClientTimeout(total=config.connect_timeout_s + 10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers=headers, ssl=ssl_arg, allow_redirects=False) as resp,
        ):
            if resp.status != 200:
                raise BurstlabError(
                    f"{shown} answered HTTP {resp.status}", hint="pass --model NAME"
                )
            raw = await resp.content.read(1 << 20)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise BurstlabError(f"{shown} did not answer JSON", hint="pass --model NAME") from None
        models = data.get("data") if isinstance(data, dict) else None
        if not models or not isinstance(models[0], dict) or "id" not in models[0]:
            raise BurstlabError(f"{shown} lists no models", hint="pass --model NAME")
        return str(models[0]["id"])

    try:
        return run_loop(ask())
    except (TimeoutError, OSError, ValueError, aiohttp.ClientError) as exc:
        reason = _URL_CREDENTIALS.sub(rf"\1{REDACTED}@", str(exc) or type(exc).__name__)
        raise BurstlabError(
            f"cannot reach {config.redacted()['url']}: {reason}",
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
        grace_s=config.grace_s,
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


@dataclass(frozen=True, slots=True)
class _Outcome:
    """How one client process's part ended: its health readings, why it stopped
    early (if it did), and the records write error that stopped it (if one did)."""

    health: dict[str, Any] = field(default_factory=dict)
    stopped_by: str | None = None
    write_error: str | None = None


class _StopState:
    """The stop requests one process has had. Each SIGINT or SIGTERM raises ``level``:
    1 stops sending (requests in flight get the grace period), 2 cancels them. In a
    worker, ``shared`` is the level the parent asks for; a signal takes the worker to
    at least that level, so a SIGTERM sent to the whole process group and the
    parent's own forwarded one count once. ``notify`` hears of each new level."""

    __slots__ = ("grace_s", "level", "notify", "shared", "signum")

    def __init__(
        self,
        shared: Any | None = None,
        notify: Callable[[str], None] | None = None,
        grace_s: float = 0.0,
    ) -> None:
        self.level = 0
        self.signum: int | None = None
        self.shared = shared
        self.notify = notify
        self.grace_s = grace_s

    def request(self, signum: int) -> None:
        before = self.level
        if self.signum is None:
            self.signum = signum
        if self.shared is None:
            self.level = min(self.level + 1, 2)
        else:
            self.level = max(self.level, int(self.shared.value), 1)
        if self.notify is not None and self.level > before:
            name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
            if self.level == 1:
                self.notify(
                    f"{name}: stopping; no new requests, those in flight may finish "
                    f"for {self.grace_s:g} s ({name} again cancels them)"
                )
            else:
                self.notify(f"{name} again: cancelling the requests in flight")

    def sync(self) -> int:
        """The level, raised to what the parent asks for (a stop before the loop ran)."""
        if self.shared is not None and self.shared.value:
            self.level = max(self.level, int(self.shared.value))
            if self.signum is None:
                self.signum = signal.SIGTERM
        return self.level

    @property
    def reason(self) -> str | None:
        if self.signum is None:
            return None
        return "sigterm" if self.signum == signal.SIGTERM else "sigint"


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _process_signals(
    stop: _StopState,
    signals: tuple[int, ...],
    forward: Callable[[], None] | None = None,
) -> Iterator[None]:
    """While the block runs outside an event loop, a signal only records a stop
    request (and calls ``forward``), never raises mid-write; the event loop's own
    handlers (:func:`_loop_signals`) take over while a runner runs. The previous
    handlers come back afterwards. Outside the main thread, nothing is changed."""
    if not _main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        stop.request(signum)
        if forward is not None:
            forward()

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)


@contextlib.contextmanager
def _loop_signals(stop: _StopState, runner: Runner, signals: tuple[int, ...]) -> Iterator[None]:
    """While a runner runs: a signal stops it (the first lets requests in flight
    finish for the grace period, the second cancels them), handled on the event loop."""
    if not _main_thread():
        yield
        return
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        stop.request(signum)
        runner.stop(stop.reason or "sigint", now=stop.level >= 2)

    previous = {sig: signal.getsignal(sig) for sig in signals}
    added: list[int] = []
    try:
        for sig in signals:
            loop.add_signal_handler(sig, on_signal, sig)
            added.append(sig)
    except NotImplementedError:  # pragma: no cover - Windows: the process handlers stay
        pass
    try:
        yield
    finally:
        for sig in added:
            loop.remove_signal_handler(sig)
            old = previous[sig]
            signal.signal(sig, old if old is not None else signal.SIG_DFL)


def _execute(
    job: _Job,
    await_t0: Callable[[], int],
    stop: _StopState,
    signals: tuple[int, ...],
    progress: Any | None = None,
) -> _Outcome:
    """Run one job on a fresh event loop, appending to the shared records file.
    ``await_t0`` is called once everything is ready and returns ``t0``
    (``perf_counter_ns``; the same clock in every process). ``signals`` stop the
    runner (see :func:`_loop_signals`); a stop requested before the loop started
    (``stop``) is applied before the first send."""
    config = BenchConfig.model_validate_json(job.config_json)
    run = RunDir(job.out)
    table = run.schedule()
    assert table is not None, "the schedule is written before any worker starts"
    schedule = make_schedule(table)
    settings = _settings(config, job.run_id)
    writer = run.records_writer()
    roots = schedule.roots[job.worker :: job.workers]

    async def main() -> _Outcome:
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
            with _loop_signals(stop, runner, signals):
                if stop.sync():
                    runner.stop(stop.reason or "sigint", now=stop.level >= 2)
                await runner.run(tick=progress.refresh if progress is not None else None)
            error = runner.write_error
            return _Outcome(
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
            return _Outcome(outcome.health, reason, exc.strerror or str(exc))
    return outcome


def _worker_main(job: _Job, shared: Any, ready: Any, start: Any, done: Any) -> None:
    """A worker process: report ready, wait for the shared ``t0``, run, report how it
    ended. SIGINT is ignored (inherited from the parent, which forwards every stop
    as SIGTERM), so one Ctrl-C at a terminal counts once."""
    stop = _StopState(shared)
    signal.signal(signal.SIGTERM, lambda signum, _frame: stop.request(signum))

    def await_t0() -> int:
        ready.put(job.worker)
        return int(start.get())

    outcome = _Outcome()
    try:
        outcome = _execute(job, await_t0, stop, (signal.SIGTERM,))
    finally:
        done.put(outcome)


def _run_workers(
    *,
    out: RunDir,
    ready: Prepared,
    run_id: str,
    stop: _StopState,
    anchor: dict[str, int],
    progress: Any | None,
) -> list[_Outcome]:
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
                _Job(
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
    with _ignoring(signal.SIGINT):
        for p in procs:
            p.start()
    try:
        with _process_signals(stop, (signal.SIGINT, signal.SIGTERM), forward):
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
            outcomes: list[_Outcome] = []
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


@contextlib.contextmanager
def _ignoring(sig: int) -> Iterator[None]:
    """``sig`` ignored for the block (child processes started in it keep ignoring it)."""
    if not _main_thread():
        yield
        return
    old = signal.signal(sig, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(sig, old if old is not None else signal.SIG_DFL)


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
