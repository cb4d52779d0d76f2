"""Stopping a run early (a signal, a full disk): no new sends, the grace period, and the
records it leaves. On aiotools' virtual clock, so every timing below is exact whatever
else the machine is doing."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import polars as pl
import pytest
from aiotools import VirtualClock

from burstlab.bench.backends import BodyBuilder, Forcing
from burstlab.bench.client import Clock, Outgoing
from burstlab.bench.runner import Runner, Settings, make_schedule
from burstlab.results.records import Record, RecordWriter, load_records
from burstlab.results.summary import summarize
from burstlab.workload.prompts import make_synth
from support.frames import workload as make_workload


class LoopClock(Clock):
    """Seconds since ``t0`` on the event loop's (virtual) clock."""

    __slots__ = ()

    def now(self) -> float:
        return asyncio.get_running_loop().time() - self.t0_ns / 1e9


class StreamingTarget:
    """Streams ``max_tokens`` one-token chunks, the first after ``ttft`` and one per
    ``itl``; notes how many requests it received, and when."""

    def __init__(self, clock: Clock, ttft: float = 0.05, itl: float = 0.1) -> None:
        self.clock = clock
        self.ttft = ttft
        self.itl = itl
        self.sent_at: list[float] = []
        self.on_send: Callable[[], None] | None = None

    async def send(self, out: Outgoing, rec: Record) -> str:
        if self.on_send is not None:
            self.on_send()
        n = int(orjson.loads(out.body)["max_tokens"])
        rec.sent_s = self.clock.now()
        self.sent_at.append(rec.sent_s)
        await asyncio.sleep(self.ttft)
        for k in range(n):
            if k:
                await asyncio.sleep(self.itl)
            now = self.clock.now()
            if rec.first_s is None:
                rec.first_s = now
            rec.chunk_s.append(now)
            rec.chunk_tokens.append(1)
        rec.end_s = self.clock.now()
        rec.output_tokens_achieved = n
        rec.outcome = "ok"
        return ""


class FullDisk(RecordWriter):
    """A records writer whose disk fills after ``room`` records."""

    def __init__(self, path: Path, room: int) -> None:
        super().__init__(path)
        self.room = room

    def write(self, record: Record) -> None:
        if self.count >= self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        super().write(record)


def settings(**kw: object) -> Settings:
    return Settings(
        api="completions",
        builder=BodyBuilder("completions", "m", Forcing()),
        synth=make_synth("text", seed=0),
        run_id="run-7",
        **kw,  # type: ignore[arg-type]
    )


def run_until(
    table: pl.DataFrame,
    tmp_path: Path,
    act: Callable[[Runner, StreamingTarget], Awaitable[None]],
    *,
    writer: RecordWriter | None = None,
    **kw: object,
) -> tuple[Runner, StreamingTarget, pl.DataFrame]:
    """Run ``table`` on a virtual clock with ``act(runner, target)`` running beside
    it (t0 is 50 ms after the start); the runner, the target and the records."""
    schedule = make_schedule(table)
    path = tmp_path / "records.jsonl"
    writer = writer or RecordWriter(path)
    box: dict[str, object] = {}

    async def main() -> None:
        with VirtualClock().patch_loop():
            clock = LoopClock(int((asyncio.get_running_loop().time() + 0.05) * 1e9))
            target = StreamingTarget(clock)
            runner = Runner(
                schedule,
                schedule.roots,
                target,
                writer=writer,
                settings=settings(**kw),
                clock=clock,
            )
            box["runner"], box["target"] = runner, target
            side = asyncio.create_task(act(runner, target))
            await runner.run()
            await side

    asyncio.run(main())
    writer.close()
    return box["runner"], box["target"], load_records(path)  # type: ignore[return-value]


def every(n: int, gap: float = 0.02, tokens: int = 10) -> pl.DataFrame:
    return make_workload([i * gap for i in range(n)], input_tokens=8, output_tokens=tokens)


async def at(t: float) -> None:
    """Sleep until ``t`` seconds after t0 (t0 is 50 ms after the start)."""
    await asyncio.sleep(0.05 + t)


def test_a_stop_sends_nothing_more_and_in_flight_requests_finish_in_the_grace(
    tmp_path: Path,
) -> None:
    # a request every 20 ms, each 0.05 + 9 * 0.1 = 0.95 s long; stop at 0.51 s
    async def act(runner: Runner, _t: StreamingTarget) -> None:
        await at(0.51)
        runner.stop("sigint")

    runner, target, table = run_until(every(100), tmp_path, act, grace_s=5.0)
    assert runner.stopped_by == "sigint"
    assert max(target.sent_at) <= 0.51
    counts = summarize(table).counts
    # sent at 0, 0.02, ..., 0.50: every one finished within the grace
    assert counts.ok == len(target.sent_at) == 26
    assert counts.cancelled == 0
    assert counts.not_sent == 74
    assert sorted(table["request_id"].to_list()) == list(range(100))


def test_the_grace_expiring_cancels_in_flight_requests_keeping_their_tokens(
    tmp_path: Path,
) -> None:
    async def act(runner: Runner, _t: StreamingTarget) -> None:
        await at(0.51)
        runner.stop("sigterm")

    runner, _, table = run_until(every(100), tmp_path, act, grace_s=0.3)
    assert runner.stopped_by == "sigterm"
    counts = summarize(table).counts
    # at 0.81 s none is done (each takes 0.95 s); the 26 sent up to 0.5 s are in flight
    assert counts.cancelled == 26
    assert counts.ok == 0
    assert counts.not_sent == 74
    cancelled = table.filter(pl.col("outcome") == "cancelled").sort("request_id")
    first = cancelled.row(0, named=True)  # sent at 0, cancelled at 0.81: 8 tokens so far
    assert first["first_s"] == pytest.approx(0.05)
    assert first["chunk_s"] == pytest.approx([0.05 + 0.1 * k for k in range(8)])
    assert first["output_tokens_achieved"] == 8
    assert first["end_s"] is None
    for row in cancelled.iter_rows(named=True):
        assert row["output_tokens_achieved"] == len(row["chunk_s"])


def test_stop_now_cancels_at_once(tmp_path: Path) -> None:
    async def act(runner: Runner, _t: StreamingTarget) -> None:
        await at(0.51)
        runner.stop("sigint")
        await asyncio.sleep(0.2)
        runner.stop("sigint", now=True)  # the second Ctrl-C, before the grace ends

    _, _, table = run_until(every(100), tmp_path, act, grace_s=60.0)
    counts = summarize(table).counts
    assert counts.cancelled == 26
    assert counts.ok + counts.cancelled + counts.not_sent == 100
    # cancelled at 0.71 s: the first request had its first 7 tokens
    first = table.filter(pl.col("request_id") == 0).row(0, named=True)
    assert first["output_tokens_achieved"] == 7


def test_requests_waiting_for_a_concurrency_slot_are_not_sent_after_a_stop(
    tmp_path: Path,
) -> None:
    async def act(runner: Runner, _t: StreamingTarget) -> None:
        await at(0.51)
        runner.stop("sigint")

    _, target, table = run_until(every(20), tmp_path, act, max_concurrency=2, grace_s=5.0)
    counts = summarize(table).counts
    assert len(target.sent_at) == 2  # the two slots, busy until 0.95 s
    assert counts.ok == 2
    assert counts.not_sent == 18
    assert counts.cancelled == 0


def test_a_failed_records_write_stops_sending_at_once(tmp_path: Path) -> None:
    """The disk fills at the 5th record: the runner stops, nothing is sent after it,
    the requests in flight are cancelled (their records cannot be written), and the
    records before it are intact."""
    sends_after_failure: list[float] = []
    writer = FullDisk(tmp_path / "records.jsonl", room=5)
    box: dict[str, Runner] = {}

    async def act(runner: Runner, target: StreamingTarget) -> None:
        box["runner"] = runner

        def check() -> None:
            if runner.write_error is not None:
                sends_after_failure.append(target.clock.now())

        target.on_send = check

    runner, target, table = run_until(every(400, tokens=3), tmp_path, act, writer=writer)
    assert isinstance(runner.write_error, OSError)
    assert runner.stopped_by == "disk_full"
    assert sends_after_failure == []
    assert table.height == 5
    assert (table["outcome"] == "ok").all()
    assert len(target.sent_at) < 400


def test_every_record_carries_the_run_id(tmp_path: Path) -> None:
    async def act(runner: Runner, _t: StreamingTarget) -> None:
        await at(0.1)
        runner.stop("sigint", now=True)

    _, _, table = run_until(every(30, tokens=2), tmp_path, act)
    assert table.height == 30
    assert set(table["run_id"].to_list()) == {"run-7"}


def test_a_stop_before_the_run_sends_nothing(tmp_path: Path) -> None:
    async def act(runner: Runner, _t: StreamingTarget) -> None:
        return

    schedule = make_schedule(every(10))
    writer = RecordWriter(tmp_path / "records.jsonl")

    async def main() -> None:
        with VirtualClock().patch_loop():
            clock = LoopClock(int(asyncio.get_running_loop().time() * 1e9))
            target = StreamingTarget(clock)
            runner = Runner(
                schedule, schedule.roots, target, writer=writer, settings=settings(), clock=clock
            )
            runner.stop("sigterm")
            await runner.run()
            assert target.sent_at == []

    asyncio.run(main())
    writer.close()
    table = load_records(tmp_path / "records.jsonl")
    assert summarize(table).counts.not_sent == 10
