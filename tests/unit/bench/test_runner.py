"""The open-loop runner with an in-memory target: schedule, sessions, accounting."""

from __future__ import annotations

import asyncio
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


class FakeTarget:
    """Answers after ``latency`` seconds with ``output_tokens`` one-token chunks."""

    def __init__(self, clock: Clock, latency: float = 0.02) -> None:
        self.clock = clock
        self.latency = latency
        self.bodies: list[dict[str, object]] = []

    async def send(self, out: Outgoing, rec: Record) -> str:
        body = orjson.loads(out.body)
        self.bodies.append(body)
        rec.sent_s = self.clock.now()
        await asyncio.sleep(self.latency)
        n = int(body["max_tokens"])  # type: ignore[call-overload]
        now = self.clock.now()
        rec.first_s = now
        rec.chunk_s = [now] * n
        rec.chunk_tokens = [1] * n
        rec.end_s = now
        rec.output_tokens_achieved = n
        rec.outcome = "ok"
        return "reply " * n


class LoopClock(Clock):
    """Seconds since ``t0`` on the event loop's clock: with aiotools' ``VirtualClock``
    patched in, time passes only when every task waits, so a test's timings are exact
    whatever else the machine is doing."""

    __slots__ = ()

    def now(self) -> float:
        return asyncio.get_running_loop().time() - self.t0_ns / 1e9


def virtual(main: Callable[[Clock], Awaitable[None]]) -> None:
    """Run ``main(clock)`` on a virtual-time loop, ``t0`` 50 ms after the start."""

    async def outer() -> None:
        with VirtualClock().patch_loop():
            await main(LoopClock(int((asyncio.get_running_loop().time() + 0.05) * 1e9)))

    asyncio.run(outer())


def workload(arrivals: list[float], sessions: list[str | None] | None = None) -> pl.DataFrame:
    return make_workload(arrivals, input_tokens=8, output_tokens=3, sessions=sessions)


def run(
    table: pl.DataFrame, tmp_path: Path, api: str = "completions", **kw: object
) -> pl.DataFrame:
    schedule = make_schedule(table)
    settings = Settings(
        api=api,  # type: ignore[arg-type]
        builder=BodyBuilder(api, "m", Forcing(), stream=True),  # type: ignore[arg-type]
        synth=make_synth("text", seed=0),
        run_id="t",
        **kw,  # type: ignore[arg-type]
    )
    path = tmp_path / "records.jsonl"
    writer = RecordWriter(path)

    async def main(clock: Clock) -> None:
        await Runner(
            schedule,
            schedule.roots,
            FakeTarget(clock),
            writer=writer,
            settings=settings,
            clock=clock,
        ).run()

    virtual(main)
    writer.close()
    return load_records(path)


def test_open_loop_sends_on_schedule(tmp_path: Path) -> None:
    arrivals = [i * 0.01 for i in range(50)]
    result = run(workload(arrivals), tmp_path)
    assert result.height == 50
    assert (result["outcome"] == "ok").all()
    lag = result["schedule_lag_s"].to_numpy()
    assert lag.min() >= 0
    assert lag.max() < 1e-6  # virtual time: every send exactly on schedule
    assert result["ttft_s"].to_numpy() == pytest.approx(0.02)
    assert (result["input_tokens"] == 8).all()


def test_sessions_wait_for_the_previous_turn(tmp_path: Path) -> None:
    table = workload([0.0, 0.05, 0.10, 0.30], ["s", "s", None, "s"])
    result = run(table, tmp_path, api="chat").sort("request_id")
    s = result.filter(pl.col("session_id") == "s").sort("turn")
    ends = s["end_s"].to_list()
    intended = s["arrival_s"].to_list()
    # turn k+1 is due its think time (the workload's gap) after turn k ended
    assert intended[1] == pytest.approx(ends[0] + 0.05, abs=1e-6)
    assert intended[2] == pytest.approx(ends[1] + 0.25, abs=1e-6)
    # chat history carries the earlier turns, so the prompt grows
    assert s["input_tokens"].to_list()[2] > s["input_tokens"].to_list()[0]


def test_max_concurrency_shows_as_lag(tmp_path: Path) -> None:
    result = run(workload([0.0] * 10), tmp_path, max_concurrency=1)
    summary = summarize(result, max_concurrency=1)
    assert summary.counts.ok == 10
    assert summary.schedule_lag_s.max > 0.15
    assert summary.client.bound


def test_cancel_accounts_for_every_request(tmp_path: Path) -> None:
    table = workload([i * 0.02 for i in range(100)])
    schedule = make_schedule(table)
    settings = Settings(
        api="completions",
        builder=BodyBuilder("completions", "m", Forcing()),
        synth=make_synth("text"),
        run_id="t",
    )
    path = tmp_path / "records.jsonl"
    writer = RecordWriter(path)

    async def main(clock: Clock) -> None:
        task = asyncio.create_task(
            Runner(
                schedule,
                schedule.roots,
                FakeTarget(clock, latency=0.2),
                writer=writer,
                settings=settings,
                clock=clock,
            ).run()
        )
        await asyncio.sleep(0.05 + 0.5)  # t0, then half a second of the run
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    virtual(main)
    writer.close()
    result = load_records(path)
    counts = summarize(result).counts.model_dump()
    assert result.height == 100
    assert sorted(result["request_id"].to_list()) == list(range(100))
    assert counts["ok"] + counts["failed"] + counts["cancelled"] + counts["not_sent"] == 100
    # sends every 20 ms, each answered 200 ms later; stopped at 0.5 s: those sent up to
    # 0.3 s are done (16), those sent after it are in flight (10), the rest unsent (74)
    assert counts["ok"] in (15, 16)
    assert counts["ok"] + counts["cancelled"] in (25, 26)
    assert counts["not_sent"] == 100 - counts["ok"] - counts["cancelled"]


def test_max_lag_drops_late_requests_as_not_sent(tmp_path: Path) -> None:
    result = run(workload([0.0] * 10), tmp_path, max_concurrency=1, max_lag_s=0.05)
    counts = summarize(result).counts.model_dump()
    dropped = result.filter(pl.col("outcome") == "not_sent")
    assert counts["ok"] >= 1
    assert counts["not_sent"] == dropped.height > 0
    assert set(dropped["error_subkind"].to_list()) == {"dropped_late"}
    assert counts["ok"] + counts["not_sent"] == 10


def test_max_output_tokens_caps_the_body_and_the_record_keeps_both(tmp_path: Path) -> None:
    table = workload([0.0, 0.01, 0.02]).with_columns(
        pl.Series("output_tokens", [1, 2, 9], dtype=pl.Int32)
    )
    for api in ("completions", "chat"):
        (tmp_path / api).mkdir()
        result = run(table, tmp_path / api, api=api, max_output_tokens=2).sort("request_id")
        assert result["output_tokens"].to_list() == [1, 2, 9]
        assert result["output_tokens_cap"].to_list() == [2, 2, 2]
        # FakeTarget answers with as many tokens as the body asked for
        assert result["output_tokens_achieved"].to_list() == [1, 2, 2]
        assert summarize(result).lengths.output_mismatched_requests == 0


def test_temperature_goes_in_every_v1_body() -> None:
    for api in ("completions", "chat"):
        builder = BodyBuilder(api, "m", Forcing(), temperature=0.6)  # type: ignore[arg-type]
        assert orjson.loads(builder.body("hi", 3))["temperature"] == 0.6
    assert (
        orjson.loads(BodyBuilder("completions", "m", Forcing()).body("hi", 3))["temperature"] == 0
    )
