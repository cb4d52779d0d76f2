"""``plan --engine``'s capacity search reports each of its simulations."""

from __future__ import annotations

import numpy as np

from burstlab.results.slo import SLO
from burstlab.sim.autoscale import CAPACITY_TRIALS, capacity_rps
from burstlab.sim.engine import Engine, EngineConfig
from support.sim import LinearCost


def test_the_capacity_search_counts_its_trials() -> None:
    engine = Engine(EngineConfig(max_num_seqs=4), LinearCost())
    rng = np.random.default_rng(0)
    inputs, outputs = rng.integers(50, 800, 200), rng.integers(20, 200, 200)
    seen: list[tuple[int, int]] = []
    quiet = capacity_rps(engine, inputs, outputs, SLO(ttft=2.0), requests=40)
    cap = capacity_rps(
        engine, inputs, outputs, SLO(ttft=2.0), requests=40, progress=lambda *a: seen.append(a)
    )
    assert seen == [(i, CAPACITY_TRIALS) for i in range(1, CAPACITY_TRIALS + 1)]
    assert cap == quiet  # reporting changes nothing
