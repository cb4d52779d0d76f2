"""The fleet mechanism: a dynamic prefill/decode ratio, draining and switch costs."""

from __future__ import annotations

import numpy as np
import pytest

from burstlab.sim.engine import OK, Engine, EngineConfig
from burstlab.sim.experiment import metrics
from burstlab.sim.fleet import ACTIVE, DECODE, DRAINING, PREFILL, STARTING
from burstlab.sim.pd import PDCluster, PDConfig, RatioConfig
from support.sim import LinearCost


def phased(n: int = 1500, rate: float = 25.0, seed: int = 1):  # type: ignore[no-untyped-def]
    """Long prompts with short answers, then short prompts with long answers."""
    rng = np.random.default_rng(seed)
    first = np.cumsum(rng.exponential(1 / rate, n))
    second = first[-1] + np.cumsum(rng.exponential(1 / rate, n))
    arrivals = np.concatenate([first, second])
    prompts = np.concatenate([rng.integers(1500, 3000, n), rng.integers(20, 100, n)])
    outputs = np.concatenate([rng.integers(2, 10, n), rng.integers(500, 1500, n)])
    return arrivals, prompts, outputs


ENGINE = Engine(EngineConfig(max_num_seqs=64, num_blocks=8000), LinearCost())


@pytest.mark.slow
def test_dynamic_ratio_beats_every_static_ratio_when_the_mix_changes() -> None:
    work = phased()
    static = {}
    for p in (1, 2, 3):
        result = PDCluster(ENGINE, PDConfig(prefill=p, decode=4 - p)).run(*work)
        static[p] = metrics(result, work[0], work[2])
    cluster = PDCluster(ENGINE, PDConfig(prefill=2, decode=2, dynamic=RatioConfig()))
    result = cluster.run(*work)
    assert (result.outcome == OK).all()
    dynamic = metrics(result, work[0], work[2])
    for p, m in static.items():
        assert dynamic["e2e_mean_s"] < m["e2e_mean_s"], p
    moves = [role for _, role in cluster.controller.moves]  # type: ignore[union-attr]
    assert moves[0] == PREFILL  # the first phase presses the prefill pool
    assert DECODE in moves  # the second presses the decode pool


def test_a_moving_instance_drains_then_pays_the_switch_cost() -> None:
    work = phased(600)
    switch = 7.5
    cluster = PDCluster(ENGINE, PDConfig(prefill=2, decode=2, dynamic=RatioConfig(switch_s=switch)))
    cluster.run(*work)
    moved = {k for _, k, _, state in cluster.log if state == DRAINING}
    assert moved
    for k in moved:
        events = [(t, role, state) for t, j, role, state in cluster.log if j == k]
        d = next(i for i, e in enumerate(events) if e[2] == DRAINING)
        drained_at, new_role, state = events[d + 1]
        assert state == STARTING
        assert new_role != events[d][1]
        assert drained_at >= events[d][0]
        ready_at, _, state = events[d + 2]
        assert state == ACTIVE
        assert ready_at == drained_at + switch
        engine = cluster.instances[k].engine.run
        # nothing entered it between the start of its drain and its return
        entered = engine.arrivals()
        assert not ((entered > events[d][0]) & (entered < ready_at)).any()


def test_a_steady_mix_moves_nothing() -> None:
    rng = np.random.default_rng(3)
    n = 1500
    arrivals = np.cumsum(rng.exponential(1 / 10, n))
    work = arrivals, rng.integers(200, 1500, n), rng.integers(50, 300, n)
    cluster = PDCluster(ENGINE, PDConfig(prefill=2, decode=2, dynamic=RatioConfig()))
    cluster.run(*work)
    assert cluster.controller.moves == []  # type: ignore[union-attr]
