"""From a forecast to a plan: rates to instance counts; capacity found by simulation."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from burstlab.core.errors import InputError
from burstlab.forecast.plan import make_plan
from burstlab.results.slo import SLO
from burstlab.sim.autoscale import capacity_rps, slo_attainment
from burstlab.sim.engine import Engine, EngineConfig
from support.sim import LinearCost


def predictions(counts: dict[int, float], g: int = 600) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "granularity_s": [g] * len(counts),
            "start_s": [float(1000 + j * g) for j in counts],
            "predicted": list(counts.values()),
        }
    )


def test_instances_cover_the_forecast_rate_with_headroom_and_bounds() -> None:
    # 1, 2, (missing: keeps 2), 5 and 0 requests/s; one instance serves 1 request/s
    plan = make_plan(predictions({0: 600, 1: 1200, 3: 3000, 4: 0}), 1.0, headroom=0.2)
    assert plan.instances == [2, 3, 3, 6, 1]
    assert plan.start_s == 1000
    assert plan.interval_s == 600
    capped = make_plan(predictions({0: 600, 3: 3000}), 1.0, max_instances=5, min_instances=2)
    assert capped.instances == [2, 2, 2, 5]
    with pytest.raises(InputError, match="--max is below --min"):
        make_plan(predictions({0: 1}), 1.0, min_instances=3, max_instances=2)


def test_capacity_is_the_highest_rate_that_holds_the_slo() -> None:
    engine = Engine(EngineConfig(max_num_seqs=4), LinearCost())
    rng = np.random.default_rng(0)
    inputs, outputs = rng.integers(50, 800, 500), rng.integers(200, 800, 500)
    slo = SLO(ttft=2.0)
    cap = capacity_rps(engine, inputs, outputs, slo, requests=800)

    def attained(rate: float) -> float:
        gaps = np.random.default_rng(0).exponential(1.0, 800) / rate
        pick = np.random.default_rng(0).integers(0, 500, 800)
        arrival = np.cumsum(gaps)
        result = engine.run(arrival, inputs[pick], outputs[pick])
        return slo_attainment(result, arrival, outputs[pick], slo)

    assert 0.5 < cap < 3.0  # four sequences of ~500 tokens at ~4 ms per token
    assert attained(cap * 1.5) < 0.99
    with pytest.raises(InputError, match=r"even at 0\.001"):
        capacity_rps(engine, inputs, outputs, SLO(ttft=1e-4), requests=50)
