"""The summary's utilisation: version 3 carries it through JSON; a version-2 summary,
which has none, still reads."""

from __future__ import annotations

import dataclasses

import orjson

from burstlab.results.records import records_table
from burstlab.results.summary import (
    SUMMARY_VERSION,
    EngineStats,
    Peak,
    ReplicaUtilisation,
    RunSummary,
    UtilisationStats,
    summarize,
    upgrade_summary,
)
from support.records import ok_record


def stats() -> UtilisationStats:
    return UtilisationStats(
        basis="roofline",
        window_s=120.0,
        bin_s=0.5,
        busy_share=0.9,
        mfu=0.3,
        mbu=0.4,
        mfu_when_busy=0.3 / 0.9,
        mbu_when_busy=0.4 / 0.9,
        peak_busy_share=Peak(value=1.0, start_s=3.0, replica=1),
        peak_mfu=Peak(value=0.55, start_s=10.5, replica=0),
        peak_mbu=Peak(value=0.7, start_s=60.0, replica=1),
        replicas=[
            ReplicaUtilisation(replica=0, busy_share=0.85, mfu=0.35, mbu=0.3),
            ReplicaUtilisation(replica=1, busy_share=0.95, mfu=0.25, mbu=0.5),
        ],
    )


def summary() -> RunSummary:
    table = records_table([dataclasses.asdict(ok_record(i, i * 0.5)) for i in range(20)])
    engine = EngineStats(iterations=100, steps=40, preemptions=0, wall_s=0.1, utilisation=stats())
    return summarize(table, engine=engine)


def test_utilisation_round_trips_through_json() -> None:
    s = summary()
    assert s.version == SUMMARY_VERSION >= 3
    back = RunSummary.model_validate_json(s.model_dump_json())
    assert back == s
    assert back.engine is not None
    assert back.engine.utilisation == stats()


def test_a_version_2_summary_reads_without_utilisation() -> None:
    data = orjson.loads(summary().model_dump_json())
    data["version"] = 2
    del data["engine"]["utilisation"]
    read = RunSummary.model_validate(upgrade_summary(data))
    assert read.engine is not None
    assert read.engine.utilisation is None
    assert read.engine.iterations == 100


def test_busy_only_leaves_mfu_and_mbu_out() -> None:
    u = UtilisationStats(
        basis="busy_only",
        window_s=10.0,
        bin_s=1.0,
        busy_share=0.5,
        peak_busy_share=Peak(value=1.0, start_s=0.0),
    )
    dumped = orjson.loads(u.model_dump_json())
    assert dumped["mfu"] is None
    assert dumped["peak_mbu"] is None
    assert dumped["replicas"] == []
