"""The Ray executor's pieces that need no Ray: the records an actor streams, the
accounting of a lost actor's requests, the per-node verdict, and the options."""

from __future__ import annotations

import dataclasses
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

from burstlab.bench.config import BenchConfig, Prepared
from burstlab.bench.ray_executor import _Actor, _Driver, _fill, _Stream, connect
from burstlab.bench.runner import make_schedule
from burstlab.bench.stop import StopState
from burstlab.core.errors import InputError
from burstlab.results.records import Record, load_records, records_table
from burstlab.results.rundir import RunDir
from burstlab.results.summary import LAG_P99_LIMIT_S, summarize
from support.frames import workload
from support.records import ok_record


def test_an_actors_stream_names_its_node_and_hands_each_record_over_once() -> None:
    stream = _Stream("10.0.0.7")
    for i, lag in ((4, 0.003), (2, 0.001), (6, None)):
        rec = Record(request_id=i, arrival_s=float(i), outcome="ok")
        rec.dispatched_s = None if lag is None else i + lag
        stream.write(rec)
    lines, ids = stream.take()
    assert ids == [4, 2, 6]
    rows = [orjson.loads(line) for line in lines.splitlines()]
    assert [r["node"] for r in rows] == ["10.0.0.7"] * 3
    assert stream.take() == (b"", [])
    assert stream.first == (2.0, pytest.approx(0.001))  # the earliest request sent


def driver_with_lost_actor(tmp_path: Path, recorded: set[int], died_at_s: float) -> _Driver:
    out = RunDir.create(tmp_path / "run")
    ready = Prepared(BenchConfig(url="http://127.0.0.1:9", model="m"), {}, ())
    driver = _Driver(out, ready, "r1", StopState(), None, None, out.records_writer())
    driver.actors = [_Actor(0, None, node="a"), _Actor(1, None, node="b")]
    lost = driver.actors[1]
    lost.lost, lost.recorded, lost.died_at_s = "ActorDiedError: killed", set(recorded), died_at_s
    return driver


def test_a_lost_actors_unrecorded_requests_become_records(tmp_path: Path) -> None:
    # roots 0..5 at 1 s apart; request 1 opens a 3-turn session (1, 6, 7)
    sessions = [None, "s", None, None, None, None, "s", "s"]
    table = workload([0, 1, 2, 3, 4, 5, 6, 7], sessions=sessions)
    schedule = make_schedule(table)
    assert schedule.roots == [0, 1, 2, 3, 4, 5]
    # actor 1 of 2 has roots 1, 3, 5 and the session's later turns 6, 7; it recorded
    # request 1 (the session's first turn) and died 3.5 s into the run
    driver = driver_with_lost_actor(tmp_path, {1}, 3.5)
    _fill(driver, schedule, lost=True)
    driver.writer.close()
    rows = {r["request_id"]: r for r in load_records(tmp_path / "run").iter_rows(named=True)}
    assert sorted(rows) == [3, 5, 6, 7]  # each unrecorded request once; actor 0 had none lost
    assert {r["error_subkind"] for r in rows.values()} == {"actor_lost"}
    assert {r["worker"] for r in rows.values()} == {1}
    assert {r["node"] for r in rows.values()} == {"b"}
    # due before the actor died (3), or next after a turn that ended (6): maybe sent
    assert (rows[3]["outcome"], rows[3]["error_kind"]) == ("failed", "internal")
    assert (rows[6]["outcome"], rows[6]["error_kind"]) == ("failed", "internal")
    # not yet due (5), or after a turn that never ended (7): not sent
    assert (rows[5]["outcome"], rows[5]["error_kind"]) == ("not_sent", None)
    assert (rows[7]["outcome"], rows[7]["error_kind"]) == ("not_sent", None)
    assert "ActorDiedError" in rows[3]["error_text"]


def test_a_stop_before_the_start_leaves_every_request_not_sent(tmp_path: Path) -> None:
    schedule = make_schedule(workload([0, 1, 2, 3]))
    driver = driver_with_lost_actor(tmp_path, set(), 0.0)
    driver.actors[0].lost = "stopped"
    _fill(driver, schedule, lost=False)
    driver.writer.close()
    table = load_records(tmp_path / "run")
    assert Counter(table["request_id"].to_list()) == Counter(range(4))
    assert set(table["outcome"].to_list()) == {"not_sent"}
    assert table["error_subkind"].null_count() == 4


def test_the_client_bound_verdict_is_given_per_node() -> None:
    late = 2 * LAG_P99_LIMIT_S
    recs = [ok_record(i, i * 0.1, lag=0.0005) for i in range(50)]
    recs += [ok_record(50 + i, i * 0.1, lag=late) for i in range(50)]
    rows = [dataclasses.asdict(r) | {"node": "fast" if r.request_id < 50 else "slow"} for r in recs]
    health = [
        {"loop_lag_max_s": 0.001, "cpu_saturated": False, "node": "fast"},
        {"loop_lag_max_s": 0.001, "cpu_saturated": True, "node": "slow"},
    ]
    s = summarize(records_table(rows), health=health)
    assert s.client.bound
    nodes = s.client_by_node
    assert nodes is not None
    assert set(nodes) == {"fast", "slow"}
    assert not nodes["fast"].bound
    assert nodes["slow"].bound
    assert any("schedule lag p99" in r for r in nodes["slow"].reasons)
    assert any("CPU" in r for r in nodes["slow"].reasons)


def test_a_run_outside_ray_has_no_per_node_verdict() -> None:
    recs = [dataclasses.asdict(ok_record(i, i * 0.1)) for i in range(5)]
    table = records_table(recs)
    assert table["node"].null_count() == 5  # the column is there, null
    assert summarize(table).client_by_node is None


def test_address_needs_the_ray_executor() -> None:
    with pytest.raises(InputError, match="needs --executor ray") as caught:
        BenchConfig.from_options(url="http://h", address="auto")
    assert caught.value.field == "--address"
    config = BenchConfig.from_options(url="http://h", executor="ray", address="auto")
    assert "workers" not in config.model_fields_set  # one actor per CPU by default


def test_without_ray_the_executor_is_refused_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # ``import ray`` fails as if not installed
    with pytest.raises(InputError, match="ray is not installed") as caught:
        connect(BenchConfig(url="http://h", executor="ray"))
    assert caught.value.field == "--executor"
    assert "burstlab[ray]" in (caught.value.hint or "")
