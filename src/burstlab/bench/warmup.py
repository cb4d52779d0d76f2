"""Warm-up requests sent before a run's ``t0`` (``bench --warmup N``).

A server's first requests pay for what later ones do not: CUDA graph capture, JIT
compilation, cold caches, new connections. ``--warmup N`` sends N requests first and
waits for every one of them; only then is ``t0`` taken and the workload sent.

What is sent: the workload's first N requests by arrival (cycled when N is larger
than the workload), each as a single request with the same model, input and output
lengths, sessions and prefix ids dropped, and **prompts of their own**: each is built
under a request key past the workload's (the run's request ``i`` has key ``i``; warm-up
request ``j`` has key ``height + j``), so no measured request finds its synthetic prompt
in the server's prefix cache because of the warm-up. (A prompt pool has only so many
prompts of one length: there a warm-up prompt may be one the run also sends, as the
run's own requests share them.) They are sent at once, at most
``max_concurrency`` at a time.

Where they go: ``warmup.jsonl`` in the run directory (written through
:class:`~burstlab.results.rundir.RunDir`), never ``records.jsonl``: the run's
records, counts and metrics are the workload's alone.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from burstlab.bench.client import Clock
from burstlab.bench.config import Prepared
from burstlab.bench.runner import Runner, make_schedule
from burstlab.bench.stop import StopState, loop_signals
from burstlab.bench.workers import _settings, _target
from burstlab.core.loop import run as run_loop
from burstlab.results.records import Record
from burstlab.results.rundir import RunDir
from burstlab.workload.prompts import Prompt, PromptSynth


@dataclass(frozen=True, slots=True)
class ShiftedKeys:
    """A prompt builder whose request keys are ``shift`` past the caller's: prompts no
    request of the run is given."""

    synth: PromptSynth
    shift: int

    def build(self, n_tokens: int, key: int, hash_ids: Sequence[int] | None = None) -> Prompt:
        return self.synth.build(n_tokens, key + self.shift, hash_ids)


@dataclass(frozen=True, slots=True)
class Warmup:
    """How the warm-up went: requests sent, ok and failed (or cancelled by a stop),
    and the seconds it took."""

    requests: int
    ok: int
    failed: int
    seconds: float

    def line(self) -> str:
        """One sentence for the console."""
        return (
            f"warm-up: {self.requests} requests, {self.ok} ok, {self.failed} failed, "
            f"in {self.seconds:.1f} s (kept in warmup.jsonl, out of the run's metrics)"
        )


def warmup_table(workload: pl.DataFrame, n: int) -> pl.DataFrame:
    """The warm-up's requests: the workload's first ``n`` by arrival (cycled), each a
    single request at offset 0, with no session and no prefix ids."""
    first = workload.sort("arrival_s", maintain_order=True)
    rows = [i % first.height for i in range(n)]
    table = first.select(pl.all().gather(rows)).with_columns(
        pl.lit(0.0).alias("arrival_s"),
        pl.lit(None, dtype=pl.String).alias("session_id"),
        pl.lit(None, dtype=pl.Int32).alias("turn"),
    )
    return table.drop("hash_ids", strict=False)


def warm_up(
    workload: pl.DataFrame, ready: Prepared, out: RunDir, stop: StopState, run_id: str
) -> Warmup:
    """Send ``ready.config.warmup`` requests shaped like ``workload``'s first ones and
    wait for them all (see the module's docstring); their records go to
    ``warmup.jsonl``, under the run id ``RUN_ID-warmup``. A signal during the warm-up
    stops it as it would stop the run (the run then sends nothing)."""
    config = ready.config
    n = config.warmup
    if n <= 0 or workload.height == 0:
        return Warmup(0, 0, 0, 0.0)
    schedule = make_schedule(warmup_table(workload, n))
    settings = _settings(config, f"{run_id}-warmup", ready.headers)
    settings.synth = ShiftedKeys(settings.synth, workload.height)
    writer = out.warmup_writer()
    records: list[Record] = []
    start = time.perf_counter()

    async def main() -> None:
        clock = Clock(time.perf_counter_ns())
        async with _target(config, ready.headers, clock) as target:
            runner = Runner(
                schedule,
                list(schedule.roots),
                target,
                writer=writer,
                settings=settings,
                clock=clock,
                on_record=records.append,
            )
            with loop_signals(stop, runner, (signal.SIGINT, signal.SIGTERM)):
                if stop.sync():
                    runner.stop(stop.reason or "sigint", now=True)
                await runner.run()

    try:
        run_loop(main())
    finally:
        writer.close()
    ok = sum(rec.outcome == "ok" for rec in records)
    return Warmup(len(records), ok, len(records) - ok, time.perf_counter() - start)
