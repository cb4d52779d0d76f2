"""The kernel's compiled cost models are the Python models, bit for bit, and a model
the kernel cannot compile is called from Python with the same result."""

from __future__ import annotations

import numpy as np
import pytest

from burstlab.sim.cost import GPU, Linear
from burstlab.sim.engine import Engine, EngineConfig
from burstlab.sim.engine.costs import compile_cost
from burstlab.sim.engine.kernel import COST_PYTHON, iteration_cost
from burstlab.sim.presets import roofline
from support.sim import LinearCost, workload

ROOFLINE = roofline("A100-80G", "Llama-2-7B")
TP2 = ROOFLINE.model_copy(
    update={"tp": 2, "gpu": GPU(**{**ROOFLINE.gpu.model_dump(), "link_bw": 300e9})}
)
LINEAR = Linear(c0=0.004, c_prefill=5e-5, c_attn=1e-9, c_decode=2e-5, c_ctx=2e-8)


@pytest.mark.parametrize("model", [ROOFLINE, TP2, LINEAR], ids=["roofline", "tp2", "linear"])
def test_compiled_costs_are_the_model_values_bit_for_bit(model: object) -> None:
    kind, params = compile_cost(model)  # type: ignore[arg-type]
    assert kind != COST_PYTHON
    rng = np.random.default_rng(0)
    for _ in range(2000):
        pt = float(rng.integers(0, 4) * rng.integers(0, 8192))
        pa = float(pt * rng.integers(0, 4000)) + (pt * (pt + 1) / 2)
        ds = float(rng.integers(0, 256))
        dc = float(ds * rng.integers(0, 4096))
        expected = float(model.iteration_s(pt, pa, ds, dc))  # type: ignore[attr-defined]
        assert iteration_cost(kind, params, pt, pa, ds, dc) == expected


def test_a_python_cost_model_gives_the_compiled_models_results() -> None:
    """support.sim.LinearCost is not compiled: the kernel asks Python each iteration."""
    assert compile_cost(LinearCost())[0] == COST_PYTHON
    work = workload(300, 6.0, seed=3)
    cfg = EngineConfig(num_blocks=600)
    python = Engine(cfg, LinearCost(0.004, 5e-5, 1e-9, 2e-5, 2e-8)).run(*work)
    compiled = Engine(cfg, LINEAR).run(*work)
    assert np.array_equal(python.outcome, compiled.outcome)
    assert np.allclose(python.end, compiled.end, atol=1e-9, equal_nan=True)
    assert python.iterations == compiled.iterations


def test_a_cost_model_changed_in_place_is_read_afresh_by_the_next_run() -> None:
    from burstlab.sim.cluster import Cluster, ClusterConfig

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
