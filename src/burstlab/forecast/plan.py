"""From a request-count forecast to an instance-count plan.

For each forecast interval of ``g`` seconds with ``c`` predicted requests, the
plan runs ``ceil(c / g x (1 + headroom) / capacity_rps)`` instances, within
``[min_instances, max_instances]``. ``capacity_rps`` is what one instance serves
within the SLO: given, or found by simulating the engine
(:func:`burstlab.sim.autoscale.capacity_rps`). Intervals the forecast does not
cover inside its span keep the previous interval's count.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from burstlab.core.errors import InputError
from burstlab.forecast.series import carry_forward
from burstlab.sim.autoscale import Plan


def make_plan(
    predictions: pl.DataFrame,
    capacity_rps: float,
    *,
    headroom: float = 0.2,
    min_instances: int = 1,
    max_instances: int | None = None,
    startup_s: float = 120.0,
    source: dict[str, object] | None = None,
) -> Plan:
    """The plan for one series of predicted request counts (columns ``start_s``,
    ``predicted`` and ``granularity_s``, one granularity)."""
    if predictions.is_empty():
        raise InputError("the forecast holds no predictions of the request count")
    if capacity_rps <= 0:
        raise InputError("the capacity per instance must be positive", field="--capacity")
    if max_instances is not None and max_instances < min_instances:
        raise InputError("--max is below --min", field="--max")
    granularities = predictions["granularity_s"].unique().to_list()
    if len(granularities) != 1:
        raise InputError(f"predictions mix granularities {sorted(granularities)}; pick one")
    interval = float(granularities[0])
    table = predictions.sort("start_s")
    starts = table["start_s"].to_numpy()
    counts = np.clip(table["predicted"].to_numpy().astype(np.float64), 0, None)
    slot = np.rint((starts - starts[0]) / interval).astype(np.int64)
    filled = np.zeros(int(slot[-1]) + 1)
    known = np.zeros(filled.size, dtype=bool)
    filled[slot], known[slot] = counts, True
    filled = carry_forward(filled, known)  # gaps keep the previous interval's count
    wanted = np.ceil(filled / interval * (1 + headroom) / capacity_rps - 1e-9)
    upper = max_instances if max_instances is not None else math.inf
    instances = [int(min(max(w, min_instances), upper)) for w in wanted]
    return Plan(
        start_s=float(starts[0]),
        interval_s=interval,
        instances=instances,
        startup_s=startup_s,
        capacity_rps=capacity_rps,
        headroom=headroom,
        min_instances=min_instances,
        max_instances=max_instances,
        source=dict(source or {}),
    )
