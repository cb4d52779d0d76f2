"""The open-loop schedule: request i goes out at ``t0 + arrival_s[i]``, whatever the server does.

One coroutine walks the schedule, building each request's body ahead of its
time, sleeping until the absolute instant ``t0 + arrival_s`` (never a relative
interval, so errors do not accumulate) and starting a task per request. A
session's later turns are not on the fixed schedule: turn k+1 is sent its
think time (the workload's gap between the two turns) after turn k ends, with
the real reply in the chat history. Every scheduled request ends as exactly one
record: ok, failed, cancelled (in flight at Ctrl-C) or not_sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from burstlab.bench.backends import Api, BodyBuilder
from burstlab.bench.client import Clock, Outgoing, Target
from burstlab.results.records import Record, RecordWriter
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
        while clock.now() < target:
            self.spins += 1
            await asyncio.sleep(0)


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
    builder: BodyBuilder
    synth: PromptSynth
    run_id: str
    max_concurrency: int | None = None
    max_lag_s: float | None = None
    #: Seconds from start-up to ``t0``: time to open the session before the first send.
    lead_s: float = 0.2


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
        writer: RecordWriter,
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
        self._pending: set[int] = set()
        self._sem = (
            asyncio.Semaphore(settings.max_concurrency) if settings.max_concurrency else None
        )
        self._stopping = False

    async def run(self, tick: Callable[[], None] | None = None) -> None:
        """Send everything, then wait for the stragglers; on cancellation, record
        in-flight requests as cancelled and unsent ones as not_sent. ``tick`` (a
        progress display's refresh) is called twice a second."""
        for i in self.roots:
            self._pending.update(self._chain(i))
        probe = asyncio.create_task(self._watch(tick))
        try:
            await self._dispatch()
            while self._tasks:
                await asyncio.gather(*list(self._tasks))
        except asyncio.CancelledError:
            self._stopping = True
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
            raise
        finally:
            probe.cancel()
            for i in sorted(self._pending):
                self._emit(self._record(i, float(self.s.arrival_s[i])))
            self.writer.sync()

    def _chain(self, i: int) -> list[int]:
        out = [i]
        while self.s.follow[out[-1]] >= 0:
            out.append(self.s.follow[out[-1]])
        return out

    async def _dispatch(self) -> None:
        arrival = self.s.arrival_s
        for i in self.roots:
            await self.pacer.until(float(arrival[i]))
            task = asyncio.create_task(self._session(i, float(arrival[i])))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

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
        """Send request ``i`` (due at ``intended``); return when it ended."""
        rec = self._record(i, intended)
        self._pending.discard(i)
        if self._sem is not None:
            await self._sem.acquire()
        try:
            rec.dispatched_s = self.clock.now()
            if self.cfg.max_lag_s is not None and rec.dispatched_s - intended > self.cfg.max_lag_s:
                rec.outcome, rec.error_subkind = "not_sent", "dropped_late"
                self._emit(rec)
                return rec.dispatched_s
            if self.on_dispatch is not None:
                self.on_dispatch()
            out, sent_tokens, exact = self._build(i, state)
            rec.input_tokens = sent_tokens
            rec.prompt_exact = exact
            try:
                reply = await self.target.send(out, rec)
            except asyncio.CancelledError:
                rec.outcome = "cancelled"
                rec.failed = True
                self._emit(rec)
                raise
            except Exception as exc:
                rec.fail("internal", type(exc).__name__, str(exc))
                reply = ""
            self._emit(rec)
            if state.messages or self.s.follow[i] >= 0:
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
        prompt = self.cfg.synth.build(max(1, own), key=i, hash_ids=hashes)
        content: Any = prompt.text if prompt.text is not None else prompt.token_ids
        if chat:
            messages = [*state.messages, {"role": "user", "content": str(content)}]
            body = self.cfg.builder.body(messages, s.output_tokens[i])
            sent_tokens = state.history_tokens + prompt.tokens
            state.messages = messages
        else:
            body = self.cfg.builder.body(content, s.output_tokens[i])
            sent_tokens = prompt.tokens
        out = Outgoing(body, f"{self.cfg.run_id}-{i}", keep_text=chat and has_next)
        state.history_tokens = sent_tokens
        return out, sent_tokens, prompt.exact

    @staticmethod
    def _remember(state: _Session, out: Outgoing, rec: Record, reply: str) -> None:
        if not out.keep_text:
            return
        state.messages.append({"role": "assistant", "content": reply})
        state.history_tokens = (rec.input_tokens_achieved or rec.input_tokens) + (
            rec.output_tokens_achieved or 0
        )

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
            output_tokens=s.output_tokens[i],
            failed=True,
            worker=self.worker,
        )

    def _emit(self, rec: Record) -> None:
        if rec.outcome == "ok":
            rec.failed = False
        self.writer.write(rec)
        if self.on_record is not None:
            self.on_record(rec)

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
            with contextlib.suppress(OSError):
                await asyncio.get_running_loop().run_in_executor(None, self.writer.sync)
