"""The open-loop schedule: request i goes out at ``t0 + arrival_s[i]``, whatever the server does.

One coroutine walks the schedule, building each request's body ahead of its
time, sleeping until the absolute instant ``t0 + arrival_s`` (never a relative
interval, so errors do not accumulate) and starting a task per request. A
session's later turns are not on the fixed schedule: turn k+1 is sent its
think time (the workload's gap between the two turns) after turn k ends, with
the real reply in the chat history. Every scheduled request ends as exactly one
record: ok, failed, cancelled (in flight when the run was stopped) or not_sent.

:meth:`Runner.stop` ends a run early (a signal, a full disk): no new request is
sent from then on, and those in flight get ``grace_s`` seconds to finish before
they are cancelled, or are cancelled at once (``now=True``: a second Ctrl-C). A
cancelled record keeps the stamps and tokens it had.
"""

from __future__ import annotations

import asyncio
import errno
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from burstlab.bench.backends import Api, Builder
from burstlab.bench.client import Clock, Outgoing, Target
from burstlab.results.records import Record, RecordSink
from burstlab.workload.pools import PoolSynth
from burstlab.workload.prompts import PromptSynth


class Pacer:
    """Waits until absolute instants on ``clock``, never returning early.

    uvloop's timers round to the nearest millisecond and count from the loop's
    cached time, so they fire up to about 0.5 ms early; the rest is waited out
    by yielding to the event loop (other requests' work runs meanwhile). Those
    idle yields cost CPU that is not work: ``spins`` counts them and
    ``spin_cpu_s`` (measured by :meth:`calibrate`) is the CPU one costs, so the
    client's saturation check can leave them out.
    """

    __slots__ = ("clock", "spin_cpu_s", "spins")

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.spins = 0
        self.spin_cpu_s = 0.0

    async def calibrate(self, rounds: int = 500) -> None:
        """Measure the CPU seconds of one idle yield of this event loop."""
        start = time.process_time()
        for _ in range(rounds):
            await asyncio.sleep(0)
        self.spin_cpu_s = (time.process_time() - start) / rounds

    async def until(self, target: float) -> None:
        """Return at ``target`` (seconds on the clock) or as soon after as the loop allows."""
        clock = self.clock
        wait = target - clock.now()
        if wait > 0:
            await asyncio.sleep(wait)
        while (now := clock.now()) < target:
            self.spins += 1
            await asyncio.sleep(0)
            if clock.now() == now:
                # Time stood still while others ran: a virtual clock, which moves only
                # when every task sleeps. Sleep out the rest (at least 10 ns,
                # more than the loop's timer resolution) rather than spin forever.
                await asyncio.sleep(max(target - now, 1e-8))


@dataclass(slots=True)
class Schedule:
    """The workload as plain columns, indexed by request id (row order)."""

    arrival_s: np.ndarray
    input_tokens: list[int]
    output_tokens: list[int]
    model: list[str | None]
    log_type: list[str | None]
    session_id: list[str | None]
    turn: list[int | None]
    hash_ids: list[list[int] | None] | None
    #: Request ids sent on the fixed schedule (first turns and requests outside sessions).
    roots: list[int]
    #: ``follow[i]`` = the next turn of i's session, or -1.
    follow: list[int]
    #: Whether session inputs already include the earlier turns (``generate --history``).
    cumulative: bool

    @property
    def size(self) -> int:
        return len(self.input_tokens)


def make_schedule(table: pl.DataFrame) -> Schedule:
    """Order the workload by arrival and link each session's turns in turn order."""
    table = table.sort("arrival_s", maintain_order=True)
    session = table["session_id"].to_list()
    turn = table["turn"].to_list()
    inputs = table["input_tokens"].to_list()
    outputs = table["output_tokens"].to_list()
    follow = [-1] * table.height
    roots: list[int] = []
    last: dict[str, int] = {}
    cumulative = True
    linked = False
    for i in sorted(range(table.height), key=lambda j: (session[j] or "", turn[j] or 0, j)):
        sid = session[i]
        if sid is None or sid not in last:
            roots.append(i)
        else:
            prev = last[sid]
            follow[prev] = i
            linked = True
            cumulative &= inputs[i] >= inputs[prev] + outputs[prev]
        if sid is not None:
            last[sid] = i
    roots.sort()
    hashes = table["hash_ids"].to_list() if "hash_ids" in table.columns else None
    return Schedule(
        arrival_s=table["arrival_s"].to_numpy().astype(np.float64),
        input_tokens=inputs,
        output_tokens=outputs,
        model=table["model"].cast(pl.String).to_list(),
        log_type=table["log_type"].cast(pl.String).to_list(),
        session_id=session,
        turn=turn,
        hash_ids=hashes,
        roots=roots,
        follow=follow,
        cumulative=linked and cumulative,
    )


@dataclass(slots=True)
class Settings:
    """How requests are built and paced (see ``burstlab bench --help``)."""

    api: Api
    builder: Builder
    synth: PromptSynth
    run_id: str
    max_concurrency: int | None = None
    max_lag_s: float | None = None
    #: Seconds from start-up to ``t0``: time to open the session before the first send.
    lead_s: float = 0.2
    #: Seconds requests in flight may run on after a first stop before they are cancelled.
    grace_s: float = 5.0
    #: The most output tokens asked of the server (``--max-output-tokens``; None: no cap).
    max_output_tokens: int | None = None


@dataclass(slots=True)
class Health:
    """Signs that the client, not the server, limited the run."""

    loop_lag_max_s: float = 0.0
    cpu_busy_s: int = 0
    cpu_saturated: bool = False
    cpu_share_max: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "loop_lag_max_s": self.loop_lag_max_s,
            "cpu_saturated": self.cpu_saturated,
            "cpu_share_max": self.cpu_share_max,
        }


def write_failure(exc: OSError) -> str:
    """The stop reason for a failed records write: ``disk_full`` when the disk (or a
    quota, or the file size limit) is full, else ``write_error``."""
    full = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    return "disk_full" if exc.errno in full else "write_error"


def _cancelled(rec: Record) -> None:
    """Mark a request cancelled in flight, keeping what it had received: its first
    token, chunk times and the tokens so far (counted from the chunks unless the
    server's usage already said)."""
    rec.outcome = "cancelled"
    rec.failed = True
    if rec.output_tokens_achieved is None and rec.chunk_tokens:
        rec.output_tokens_achieved = sum(rec.chunk_tokens)
        rec.tokens_source = "events"


@dataclass(slots=True)
class _Session:
    messages: list[dict[str, str]] = field(default_factory=list)
    history_tokens: int = 0


class Runner:
    """Runs one schedule (or one worker's share of it) against a target."""

    def __init__(
        self,
        schedule: Schedule,
        roots: list[int],
        target: Target,
        *,
        writer: RecordSink,
        settings: Settings,
        clock: Clock,
        worker: int = 0,
        on_record: Callable[[Record], None] | None = None,
        on_dispatch: Callable[[], None] | None = None,
    ) -> None:
        self.s = schedule
        self.roots = roots
        self.target = target
        self.writer = writer
        self.cfg = settings
        self.clock = clock
        self.worker = worker
        self.on_record = on_record
        self.on_dispatch = on_dispatch
        self.health = Health()
        self.pacer = Pacer(clock)
        self._tasks: set[asyncio.Task[None]] = set()
        #: Tasks whose request is on the wire (the rest wait: pacing, think time, a slot).
        self._sending: set[asyncio.Task[Any]] = set()
        self._pending: set[int] = set()
        self._errors: list[BaseException] = []
        self._sem = (
            asyncio.Semaphore(settings.max_concurrency) if settings.max_concurrency else None
        )
        self._stopping = False
        self._dispatcher: asyncio.Task[None] | None = None
        self._grace: asyncio.TimerHandle | None = None
        #: Why the run was stopped early (the first :meth:`stop`'s reason), or None.
        self.stopped_by: str | None = None
        #: The first error writing a record; from then on nothing more is written.
        self.write_error: OSError | None = None

    async def run(self, tick: Callable[[], None] | None = None) -> None:
        """Send everything, then wait for the stragglers. After :meth:`stop`, or when
        this coroutine is cancelled, requests in flight end as cancelled and unsent
        ones as not_sent. ``tick`` (a progress display's refresh) is called twice a
        second. A bug in a request's task is raised once every request has ended."""
        for i in self.roots:
            self._pending.update(self._chain(i))
        probe = asyncio.create_task(self._watch(tick))
        self._dispatcher = asyncio.create_task(self._dispatch())
        try:
            await asyncio.wait({self._dispatcher})
            while self._tasks:
                await asyncio.wait(set(self._tasks))
        except asyncio.CancelledError:
            self._stopping = True
            self._dispatcher.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(self._dispatcher, *self._tasks, return_exceptions=True)
            raise
        finally:
            probe.cancel()
            if self._grace is not None:
                self._grace.cancel()
            for i in sorted(self._pending):
                self._emit(self._record(i, float(self.s.arrival_s[i])))
            self._sync()
        if not self._dispatcher.cancelled() and self._dispatcher.exception() is not None:
            self._errors.insert(0, self._dispatcher.exception())  # type: ignore[arg-type]
        if self._errors:
            raise self._errors[0]

    def stop(self, reason: str, *, now: bool = False) -> None:
        """Stop the run early: no request is sent from now on (unsent ones end as
        not_sent), and those in flight may finish for ``grace_s`` seconds before they
        are cancelled; with ``now`` (also on a later call) they are cancelled at once.
        The first call's ``reason`` is kept in :attr:`stopped_by`. Call it on the
        runner's event loop (a handler added with ``add_signal_handler``)."""
        first = not self._stopping
        if first:
            self._stopping = True
            self.stopped_by = reason
            if self._dispatcher is not None:
                self._dispatcher.cancel()
            for task in self._tasks - self._sending:
                task.cancel()  # waiting to send: its request stays pending, not_sent
        if now:
            self._cancel_in_flight()
        elif self._grace is None:
            loop = asyncio.get_running_loop()
            self._grace = loop.call_later(self.cfg.grace_s, self._cancel_in_flight)

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called (or the run was cancelled)."""
        return self._stopping

    def _cancel_in_flight(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def _chain(self, i: int) -> list[int]:
        out = [i]
        while self.s.follow[out[-1]] >= 0:
            out.append(self.s.follow[out[-1]])
        return out

    async def _dispatch(self) -> None:
        arrival = self.s.arrival_s
        for i in self.roots:
            if self._stopping:
                return
            await self.pacer.until(float(arrival[i]))
            task = asyncio.create_task(self._session(i, float(arrival[i])))
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._errors.append(task.exception())  # type: ignore[arg-type]

    async def _session(self, i: int, intended: float) -> None:
        state = _Session()
        request: int = i
        while True:
            await self.pacer.until(intended)
            end = await self._one(request, intended, state)
            nxt = self.s.follow[request]
            if nxt < 0 or self._stopping:
                return
            think = float(self.s.arrival_s[nxt] - self.s.arrival_s[request])
            intended = end + think
            request = nxt

    async def _one(self, i: int, intended: float, state: _Session) -> float:
        """Send request ``i`` (due at ``intended``); return when it ended. Until it is
        sent (waiting for a concurrency slot), a stop leaves it pending: not_sent."""
        if self._sem is not None:
            await self._sem.acquire()
        try:
            if self._stopping:
                return self.clock.now()
            rec = self._record(i, intended)
            self._pending.discard(i)
            rec.dispatched_s = self.clock.now()
            if self.cfg.max_lag_s is not None and rec.dispatched_s - intended > self.cfg.max_lag_s:
                rec.outcome, rec.error_subkind = "not_sent", "dropped_late"
                self._emit(rec)
                return rec.dispatched_s
            if self.on_dispatch is not None:
                self.on_dispatch()
            task = asyncio.current_task()
            assert task is not None
            self._sending.add(task)
            out: Outgoing | None = None
            reply = ""
            try:
                out, sent_tokens, exact = self._build(i, state)
                rec.input_tokens = sent_tokens
                rec.prompt_exact = exact
                reply = await self.target.send(out, rec)
            except asyncio.CancelledError:
                self._sending.discard(task)
                _cancelled(rec)
                self._emit(rec)
                raise
            except Exception as exc:
                rec.fail("internal", type(exc).__name__, str(exc))
            self._sending.discard(task)
            self._emit(rec)
            if out is not None and (state.messages or self.s.follow[i] >= 0):
                self._remember(state, out, rec, reply)
            return rec.end_s if rec.end_s is not None else self.clock.now()
        finally:
            if self._sem is not None:
                self._sem.release()

    def _build(self, i: int, state: _Session) -> tuple[Outgoing, int, bool]:
        s = self.s
        chat = self.cfg.api == "chat"
        has_next = s.follow[i] >= 0
        own = s.input_tokens[i]
        if chat and state.messages and s.cumulative:
            own = max(1, own - state.history_tokens)
        hashes = s.hash_ids[i] if s.hash_ids is not None else None
        synth = self.cfg.synth
        if chat and state.messages and isinstance(synth, PoolSynth):
            synth = synth.followup  # a later turn adds other template tokens than a first
        prompt = synth.build(max(1, own), key=i, hash_ids=hashes)
        content: Any = prompt.text if prompt.text is not None else prompt.token_ids
        asked = s.output_tokens[i]
        if self.cfg.max_output_tokens is not None:
            asked = min(asked, self.cfg.max_output_tokens)
        if chat:
            messages = [*state.messages, {"role": "user", "content": str(content)}]
            body = self.cfg.builder.body(messages, asked)
            sent_tokens = state.history_tokens + prompt.tokens
            state.messages = messages
        else:
            body = self.cfg.builder.body(content, asked)
            sent_tokens = prompt.tokens
        out = Outgoing(body, f"{self.cfg.run_id}-{i}", keep_text=chat and has_next)
        state.history_tokens = sent_tokens
        return out, sent_tokens, prompt.exact

    def _remember(self, state: _Session, out: Outgoing, rec: Record, reply: str) -> None:
        if not out.keep_text:
            return
        state.messages.append({"role": "assistant", "content": reply})
        reply_tokens = rec.output_tokens_achieved or 0
        if isinstance(self.cfg.synth, PoolSynth):  # the reply as the next turn's history
            reply_tokens = self.cfg.synth.reply_tokens(reply, reply_tokens)
        state.history_tokens = (rec.input_tokens_achieved or rec.input_tokens) + reply_tokens

    def _record(self, i: int, intended: float) -> Record:
        s = self.s
        return Record(
            request_id=i,
            arrival_s=intended,
            model=s.model[i],
            log_type=s.log_type[i],
            session_id=s.session_id[i],
            turn=s.turn[i],
            input_tokens=s.input_tokens[i],
            input_tokens_workload=s.input_tokens[i],
            output_tokens=s.output_tokens[i],
            output_tokens_cap=self.cfg.max_output_tokens,
            failed=True,
            worker=self.worker,
        )

    def _emit(self, rec: Record) -> None:
        if rec.outcome == "ok":
            rec.failed = False
        rec.run_id = self.cfg.run_id
        if self.write_error is None:
            try:
                self.writer.write(rec)
            except OSError as exc:
                self._write_failed(exc)
        if self.on_record is not None:
            self.on_record(rec)

    def _sync(self) -> None:
        if self.write_error is None:
            try:
                self.writer.sync()
            except OSError as exc:
                self._write_failed(exc)

    def _write_failed(self, exc: OSError) -> None:
        """The records cannot be written: stop sending at once (a run that cannot
        record must not keep loading the server) and cancel what is in flight."""
        if self.write_error is None:
            self.write_error = exc
            self.stop(write_failure(exc), now=True)

    async def _watch(self, tick: Callable[[], None] | None) -> None:
        """Every 10 ms: the event loop's lateness (a 10 ms sleep that overshoots);
        every 0.5 s: ``tick``; every second: this process's CPU share spent on work
        (idle pacing yields left out; two busy seconds in a row mark saturation)
        and an fsync of the records."""
        await self.pacer.calibrate()
        spins = self.pacer.spins
        cpu = time.process_time()
        wall = time.perf_counter()
        count = 0
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.01)
            late = time.perf_counter() - start - 0.01
            self.health.loop_lag_max_s = max(self.health.loop_lag_max_s, late)
            count += 1
            if tick is not None and count % 50 == 0:
                tick()
            if count % 100:
                continue
            now_cpu, now_wall = time.process_time(), time.perf_counter()
            idle = (self.pacer.spins - spins) * self.pacer.spin_cpu_s
            share = max(0.0, now_cpu - cpu - idle) / max(now_wall - wall, 1e-9)
            cpu, wall, spins = now_cpu, now_wall, self.pacer.spins
            self.health.cpu_share_max = max(self.health.cpu_share_max, share)
            self.health.cpu_busy_s = self.health.cpu_busy_s + 1 if share >= 0.9 else 0
            if self.health.cpu_busy_s >= 2:
                self.health.cpu_saturated = True
            if self.write_error is None:
                try:
                    await asyncio.get_running_loop().run_in_executor(None, self.writer.sync)
                except OSError as exc:
                    self._write_failed(exc)
