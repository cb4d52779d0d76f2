"""The engine's memoised iteration costs are exactly the cost model's values."""

from __future__ import annotations

import numpy as np
import pytest

from burstlab.sim.engine.costs import CostMemo as _Costs
from burstlab.sim.presets import roofline

ROOFLINE = roofline("A100-80G", "Llama-2-7B")


def direct(batch: int, ctx0: int, k: int) -> np.ndarray:
    ctx = ctx0 + batch * np.arange(k, dtype=np.float64)
    return ROOFLINE.iteration_s(np.zeros(k), np.zeros(k), np.full(k, float(batch)), ctx)


@pytest.mark.parametrize("limit", [_Costs.TABLE_LIMIT, 3000])
def test_decode_runs_read_the_model_values(limit: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bit for bit, while the tables grow and once they may not (direct calls)."""
    monkeypatch.setattr(_Costs, "TABLE_LIMIT", limit)
    costs = _Costs(ROOFLINE)
    rng = np.random.default_rng(0)
    for _ in range(300):
        batch = int(rng.integers(1, 40))
        ctx0 = int(rng.integers(batch, 60_000))
        k = int(rng.integers(1, 500))
        assert np.array_equal(costs.decode_run(batch, ctx0, k), direct(batch, ctx0, k))
    assert costs.table_size <= limit
    assert costs.table_size == sum(t.size for t in costs.tables.values())


def test_single_steps_read_the_model_values() -> None:
    costs = _Costs(ROOFLINE)
    for pt, pa, batch, ctx in [(0, 0.0, 3, 900), (512, 131_328.0, 0, 0), (64, 2080.0, 5, 4000)]:
        expected = float(ROOFLINE.iteration_s(*np.array([[pt], [pa], [batch], [ctx]], float))[0])
        assert costs.step(pt, pa, batch, ctx) == expected
        assert costs.step(pt, pa, batch, ctx) == expected  # the kept value
    assert len(costs.steps) == 2  # decode-only steps read the table instead


def test_a_cost_model_changed_in_place_is_read_afresh_by_the_next_run() -> None:
    from burstlab.sim.cluster import Cluster, ClusterConfig
    from burstlab.sim.cost import Linear
    from burstlab.sim.engine import Engine, EngineConfig

    arrivals = np.arange(20, dtype=np.float64) * 0.05
    work = (arrivals, np.full(20, 200), np.full(20, 30))
    cost = Linear(c0=0.004, c_prefill=5e-5, c_decode=2e-5, c_ctx=2e-8)
    engine = Engine(EngineConfig(), cost)
    cluster = Cluster(engine, ClusterConfig(replicas=2))
    engine.run(*work)
    cluster.run(*work)
    cost.c0 = 0.008
    fresh = Engine(EngineConfig(), Linear(**cost.model_dump()))
    for again, anew in [
        (engine.run(*work), fresh.run(*work)),
        (cluster.run(*work), Cluster(fresh, ClusterConfig(replicas=2)).run(*work)),
    ]:
        assert np.array_equal(again.end, anew.end)
