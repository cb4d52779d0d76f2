"""Autoscaling in the loop: a plan is followed ahead of time, and beats reacting."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from burstlab.core.errors import InputError
from burstlab.results.slo import SLO
from burstlab.sim.autoscale import Plan, build_policy, load_plan, score, timeline
from burstlab.sim.engine import OK, Engine, EngineConfig
from burstlab.sim.fleet import ACTIVE, STARTING
from support.sim import LinearCost

INTERVAL = 200.0
RATES = (1, 1, 4, 4, 1, 1)  # requests/s per interval: a surge in the middle


def surge(seed: int = 0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    parts = [
        np.sort(rng.uniform(j * INTERVAL, (j + 1) * INTERVAL, rng.poisson(r * INTERVAL)))
        for j, r in enumerate(RATES)
    ]
    arrival = np.concatenate(parts)
    n = arrival.size
    return arrival, rng.integers(50, 800, n), rng.integers(200, 800, n)


# four sequences at a time: one instance serves about 1.9 requests/s
ENGINE = Engine(EngineConfig(max_num_seqs=4), LinearCost())
PLAN = Plan(
    interval_s=INTERVAL, instances=[1, 1, 3, 3, 1, 1], startup_s=60, capacity_rps=1.5, headroom=0.2
)
SLO_ = SLO(ttft=2.0, e2e=30.0)


def test_plan_positions() -> None:
    plan = Plan(start_s=100, interval_s=10, instances=[2, 5, 3])
    assert [plan.at(t) for t in (0, 100, 109.9, 110, 125, 1e9)] == [2, 2, 2, 5, 3, 3]
    assert plan.boundary_after(50) == 100
    assert plan.boundary_after(100) == 110
    assert plan.boundary_after(121) == math.inf
    assert plan.end_s == 130


def test_the_plan_launches_ahead_so_instances_are_ready_when_the_surge_starts() -> None:
    work = surge()
    fleet = build_policy("plan", ENGINE, PLAN, float(work[0][0]))
    result = fleet.run(*work)
    assert (result.outcome == OK).all()
    launched = [(t, k) for t, k, _, state in fleet.log if state == STARTING]
    ready = [(t, k) for t, k, _, state in fleet.log if state == ACTIVE and t > work[0][0]]
    assert [t for t, _ in launched] == [2 * INTERVAL - 60] * 2
    assert [t for t, _ in ready] == [2 * INTERVAL] * 2
    counts = dict(timeline(fleet))
    assert max(counts.values()) == 3
    # two instances drained when the surge's intervals end, and they stopped
    assert sum(1 for x in fleet.instances if math.isfinite(x.stopped_s)) == 2
    assert all(x.stopped_s >= 4 * INTERVAL for x in fleet.instances if x.stopped_s < math.inf)


def test_following_a_good_plan_holds_the_slo_on_fewer_instance_hours() -> None:
    work = surge()
    scores = {}
    for policy in ("plan", "static", "reactive"):
        fleet = build_policy(policy, ENGINE, PLAN, float(work[0][0]))
        scores[policy] = score(fleet, fleet.run(*work), work[0], work[2], SLO_)
    assert scores["static"]["slo_attainment"] >= 0.99
    assert scores["plan"]["slo_attainment"] >= 0.99
    assert scores["plan"]["instance_hours"] < 0.75 * scores["static"]["instance_hours"]
    # reacting to the surge after it started leaves a backlog while instances boot
    assert scores["reactive"]["slo_attainment"] < scores["plan"]["slo_attainment"] - 0.05


def test_a_bad_plan_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text('{"interval_s": -5, "instances": [1]}')
    with pytest.raises(InputError, match="interval_s") as err:
        load_plan(path)
    assert "plan.json" in str(err.value)
    path.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_plan(path)


def test_reactive_waits_a_window_and_timelines_never_dip_below_zero() -> None:
    # a late start (a plan over the end of a long trace) with a first interval of 3
    arrival, inputs, outputs = surge(seed=3)
    late = 500_000.0
    plan = PLAN.model_copy(update={"start_s": late, "instances": [3, 3, 3, 1, 1, 1]})
    fleet = build_policy("reactive", ENGINE, plan, late + float(arrival[0]))
    fleet.run(arrival + late, inputs, outputs)
    points = timeline(fleet)
    times = [t for t, _ in points]
    assert times == sorted(set(times))  # one point per instant
    assert all(count >= 1 for _, count in points)
    # the first look comes a window (60 s) after the first arrival, not at it
    first_stop = min(x.stopped_s for x in fleet.instances)
    assert points[0] == (late + float(arrival[0]), 3)
    assert first_stop >= late + float(arrival[0]) + 60
