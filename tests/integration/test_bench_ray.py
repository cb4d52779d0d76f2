"""``bench --executor ray`` on a local Ray (two CPUs: two actors of one core each)
against the fixed-timing server: every scheduled request once, the same records
and accounting as a one-process run, lag within the client-bound bar, a killed
actor's requests accounted for, and Ctrl-C kept. One Ray session serves the
module (it takes seconds to start on a busy machine)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from burstlab.bench.run import BenchConfig, bench
from burstlab.core.errors import InputError
from burstlab.results.records import load_records
from burstlab.results.rundir import RunDir, RunResult
from burstlab.results.summary import LAG_P99_LIMIT_S
from burstlab.server.app import make_app
from burstlab.server.fixed import FixedTiming
from burstlab.server.hosting import serve_in_thread
from burstlab.trace.io import write_table
from support.cli import command
from support.frames import constant_rate, workload

pytestmark = [pytest.mark.slow, pytest.mark.extra("ray")]

TTFT, ITL = 0.05, 0.01
#: The fixed server's tolerance in the fixed-server tests: never early, to 1 ms.
EARLY = 0.001


@pytest.fixture(scope="module")
def ray_session() -> Iterator[str]:
    """A local Ray with 2 CPUs for the module; yields its address for other drivers."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


class Server:
    def __init__(self, url: str, log: Path) -> None:
        self.url, self.log = url, log

    def served(self, run_id: str) -> Counter[int]:
        """How many times the server finished each request of run ``run_id``."""
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        keys = (json.loads(line)["request_id"] for line in lines if line)
        return Counter(int(k.rpartition("-")[2]) for k in keys if k.startswith(f"{run_id}-"))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    log = tmp_path / "server.jsonl"
    with serve_in_thread(make_app(FixedTiming(ttft=TTFT, itl=ITL), log_path=log)) as url:
        yield Server(url, log)


def sessions_workload(n: int, rate: float) -> pl.DataFrame:
    """``n`` requests at ``rate``: every fifth request opens a 3-turn session."""
    arrivals = [i / rate for i in range(n)]
    names = [f"s{i // 15}" if i % 15 in (0, 5, 10) else None for i in range(n)]
    return workload(arrivals, output_tokens=6, sessions=names)


def run_id(result: RunResult) -> str:
    manifest = RunDir(result.run_dir).manifest()
    assert manifest is not None
    return manifest.run_id


def raw_ids(run_dir: Path) -> list[int]:
    lines = (run_dir / "records.jsonl").read_bytes().splitlines()
    return [json.loads(line)["request_id"] for line in lines]


def test_a_ray_run_equals_a_one_process_run(
    ray_session: str, server: Server, tmp_path: Path
) -> None:
    table = sessions_workload(120, 40.0)
    n = table.height
    one = bench(table, BenchConfig(url=server.url, backend="vllm"), tmp_path / "one")
    config = BenchConfig(url=server.url, backend="vllm", executor="ray", workers=2)
    spread = bench(table, config, tmp_path / "ray")

    # every scheduled request exactly once: in the records and on the server
    for result in (one, spread):
        assert sorted(raw_ids(result.run_dir)) == list(range(n))
        assert server.served(run_id(result)) == Counter(range(n))
    assert spread.summary.counts == one.summary.counts
    assert spread.summary.counts.ok == n
    assert spread.lost == one.lost == 0

    a = load_records(one.run_dir).sort("request_id")
    b = load_records(spread.run_dir).sort("request_id")
    assert a.columns == b.columns  # the same shape
    same = [
        "request_id", "arrival_s", "session_id", "turn", "input_tokens", "output_tokens",
        "outcome", "input_tokens_achieved", "output_tokens_achieved", "finish_reason",
        "tokens_source",
    ]  # fmt: skip
    roots = a.filter(pl.col("turn").fill_null(0) == 0)
    assert b.filter(pl.col("turn").fill_null(0) == 0).select(same).equals(roots.select(same))
    later = [c for c in same if c != "arrival_s"]  # a later turn's intended time is measured
    assert b.select(later).equals(a.select(later))
    assert b["chunk_tokens"].to_list() == a["chunk_tokens"].to_list()
    last = TTFT + (pl.col("output_tokens") - 1) * ITL - EARLY
    for rows in (a, b):  # the fixed server is never early, and bench sees it so
        assert (rows["ttft_s"] >= TTFT - EARLY).all()
        assert rows.select((pl.col("e2e_s") >= last).all()).item()
        assert (rows["schedule_lag_s"] >= 0).all()

    # the actors: two, each named in its records, every session on one of them
    assert a["node"].null_count() == n
    assert set(b["worker"].to_list()) == {0, 1}
    assert b["node"].null_count() == 0
    per_session = b.drop_nulls("session_id").group_by("session_id").agg(pl.col("worker").n_unique())
    assert (per_session["worker"] == 1).all()

    manifest = RunDir(spread.run_dir).manifest()
    assert manifest is not None
    assert manifest.cluster is not None
    cluster = manifest.cluster
    assert cluster.actors == 2
    assert cluster.lost_actors == []
    assert sorted(k for node in cluster.nodes for k in node.actors) == [0, 1]
    for node in cluster.nodes:
        assert math.isfinite(node.offset_s)
        assert node.rtt_s > 0
        assert node.drift_s is not None
        assert node.start_lag_s is not None
        assert node.start_lag_s >= 0
    assert cluster.start_spread_s is not None
    assert cluster.start_spread_s >= 0
    assert manifest.t0_wall_ns is not None
    # the verdict per node, beside the overall one
    assert one.summary.client_by_node is None
    assert spread.summary.client_by_node is not None
    assert set(spread.summary.client_by_node) == set(b["node"].to_list())


def test_lag_stays_within_the_client_bound_bar(
    ray_session: str, server: Server, tmp_path: Path
) -> None:
    config = BenchConfig(url=server.url, backend="vllm", executor="ray")  # one actor per CPU
    result = bench(constant_rate(600, 100.0, 2), config, tmp_path / "run")
    s = result.summary
    assert s.counts.ok == 600
    assert s.schedule_lag_s.p99 is not None
    assert s.schedule_lag_s.p99 <= LAG_P99_LIMIT_S
    assert set(load_records(result.run_dir)["worker"].to_list()) == {0, 1}
    manifest = RunDir(result.run_dir).manifest()
    assert manifest is not None
    assert manifest.config is not None
    assert manifest.config["workers"] == 2  # what ran, though the cluster's CPUs chose it


def wait_for(check: Any, what: str, thread: threading.Thread) -> None:
    deadline = time.monotonic() + 120
    while not check():
        if not thread.is_alive():
            pytest.fail(f"the run ended before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after 120 s")
        time.sleep(0.05)


def records_in(run_dir: Path) -> int:
    path = run_dir / "records.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_a_killed_actors_requests_are_accounted_for(
    ray_session: str, server: Server, tmp_path: Path
) -> None:
    import ray

    n = 600
    run_dir = tmp_path / "run"
    config = BenchConfig(url=server.url, backend="vllm", executor="ray", workers=2)
    done: list[RunResult] = []
    thread = threading.Thread(
        target=lambda: done.append(bench(constant_rate(n, 40.0, 4), config, run_dir))
    )
    thread.start()
    wait_for(lambda: records_in(run_dir) >= 40, "40 records", thread)
    manifest = RunDir(run_dir).manifest()
    assert manifest is not None
    ray.kill(ray.get_actor(f"burstlab-{manifest.run_id}-1", namespace="burstlab"))
    thread.join(timeout=120)
    assert done, "the run did not end"
    result = done[0]

    assert sorted(raw_ids(run_dir)) == list(range(n))  # each request once, none lost
    assert result.lost == 0
    counts = result.summary.counts
    assert counts.scheduled == n
    assert counts.ok + counts.failed + counts.cancelled + counts.not_sent == n
    table = load_records(run_dir)
    mine = table.filter(pl.col("worker") == 1)
    lost = mine.filter(pl.col("error_subkind") == "actor_lost")
    assert lost.height > 0
    assert set(lost["outcome"].to_list()) <= {"failed", "not_sent"}
    assert (lost.filter(pl.col("outcome") == "failed")["error_kind"] == "internal").all()
    assert lost["node"].null_count() == 0
    # the other actor ran its whole share
    assert (table.filter(pl.col("worker") == 0)["outcome"] == "ok").all()
    final = RunDir(run_dir).manifest()
    assert final is not None
    assert final.cluster is not None
    assert final.cluster.lost_actors == [1]


@pytest.mark.parametrize(
    ("signum", "code", "name"),
    [(signal.SIGINT, 130, "sigint"), (signal.SIGTERM, 143, "sigterm")],
)
def test_a_signal_stops_a_ray_run_and_keeps_its_records(
    ray_session: str, server: Server, tmp_path: Path, signum: int, code: int, name: str
) -> None:
    """The CLI joins the module's Ray with --address; Ctrl-C (or SIGTERM) stops sending,
    lets requests in flight finish, and the run is written with every request counted."""
    path = write_table(constant_rate(2000, 50.0, 30), tmp_path / "w.parquet")
    run_dir = tmp_path / "run"
    args = [str(path), "--url", server.url, "-o", str(run_dir), "-q", "--backend", "vllm"]
    args += ["--executor", "ray", "--address", ray_session, "--no-report"]
    proc = subprocess.Popen(
        [*command(), "bench", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RAY_ADDRESS": ""},
    )
    deadline = time.monotonic() + 120
    while records_in(run_dir) < 30:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no 30 records (exit {proc.returncode}): {proc.communicate()}")
        time.sleep(0.05)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    summary = json.loads((run_dir / "summary.json").read_text())
    c = summary["counts"]
    assert (summary["status"], summary["stopped_by"]) == ("interrupted", name)
    assert c["scheduled"] == 2000
    assert c["ok"] + c["failed"] + c["cancelled"] + c["not_sent"] == 2000
    assert c["ok"] >= 30
    assert c["cancelled"] == 0  # 30 tokens take 0.34 s: all in flight finished in the grace
    assert c["not_sent"] > 0
    assert sorted(raw_ids(run_dir)) == list(range(2000))
    assert "Ray node" in out


def test_more_actors_than_cpus_is_refused_before_the_run(
    ray_session: str, server: Server, tmp_path: Path
) -> None:
    config = BenchConfig(url=server.url, backend="vllm", executor="ray", workers=3)
    with pytest.raises(InputError, match="3 Ray actors need 3 CPUs; the cluster has 2"):
        bench(constant_rate(4, 10.0), config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
