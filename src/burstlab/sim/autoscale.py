"""Autoscaling in the loop: an instance-count plan, the policies that size a cluster
over time, and their comparison on one workload.

A :class:`Plan` (``plan.json``, written by ``burstlab plan``) says how many
instances to run in each interval of the workload's time axis. Three policies
size a colocated cluster of one engine:

- ``plan``: follows the plan. The plan is known ahead, so an instance needed from
  interval start ``T`` is launched at ``T - startup_s`` and takes work from ``T``;
  instances beyond the plan's count are drained at the interval's start;
- ``static``: the plan's peak count, all the time;
- ``reactive``: no forecast. Every ``window_s`` it counts the arrivals of the
  last window and wants ``ceil(rate x (1 + headroom) / capacity_rps)``
  instances (within the plan's bounds); new ones take ``startup_s`` to boot.

Each policy is scored on the same requests: SLO attainment (the share of all
requests that completed within every SLO; failures miss), failure rate, latency
and instance-hours (launch to stop, booting and draining included).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from burstlab.core.errors import InputError, invalid
from burstlab.results.metrics import percentile, timing_table
from burstlab.results.rundir import RunDir
from burstlab.results.slo import SLO
from burstlab.sim.cluster import Cluster, ClusterConfig
from burstlab.sim.engine import OK, Engine, SimResult
from burstlab.sim.fleet import ACTIVE, SERVE, STARTING, Fleet, Router
from burstlab.sim.simulate import simulate_into

POLICIES = ("plan", "static", "reactive")


class Plan(BaseModel):
    """Instances per interval: ``instances[j]`` from ``start_s + j * interval_s``."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["instance_schedule"] = "instance_schedule"
    #: Seconds on the workload's time axis (``arrival_s``) where the plan starts.
    start_s: float = 0.0
    interval_s: float = Field(gt=0)
    instances: list[int] = Field(min_length=1)
    #: Seconds a launched instance boots before it takes work.
    startup_s: float = Field(120.0, ge=0)
    #: Requests per second one instance serves within the SLO (for ``reactive``).
    capacity_rps: float | None = Field(None, gt=0)
    headroom: float = Field(0.2, ge=0)
    min_instances: int = Field(1, ge=1)
    max_instances: int | None = Field(None, ge=1)
    slo: SLO | None = None
    #: Where the plan came from (forecast directory, series, model, granularity).
    source: dict[str, Any] = Field(default_factory=dict)

    @property
    def end_s(self) -> float:
        return self.start_s + self.interval_s * len(self.instances)

    def index(self, t: float) -> int:
        """The interval holding ``t`` (clamped to the plan)."""
        j = math.floor((t - self.start_s) / self.interval_s)
        return min(max(j, 0), len(self.instances) - 1)

    def at(self, t: float) -> int:
        """Instances the plan wants at ``t`` (seconds)."""
        return max(self.instances[self.index(t)], 1)

    def boundary_after(self, t: float) -> float:
        """The first interval start after ``t`` (inf past the plan's end)."""
        j = math.floor((t - self.start_s) / self.interval_s) + 1
        if j >= len(self.instances):
            return math.inf
        return self.start_s + max(j, 0) * self.interval_s


def load_plan(path: str | Path) -> Plan:
    """The plan in ``path`` (JSON from ``burstlab plan``), checked."""
    p = Path(path)
    try:
        data = orjson.loads(p.read_bytes())
    except OSError as exc:
        raise InputError(f"cannot read the plan: {exc.strerror}", path=p) from None
    except orjson.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc}", path=p) from None
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc, path=p) from None


def _resize(t: float, fleet: Fleet, want: int, ready_at: float) -> None:
    """Launch or drain colocated instances so ``want`` are booting or active."""
    live = fleet.members(SERVE, STARTING) + fleet.members(SERVE, ACTIVE)
    for _ in range(want - len(live)):
        fleet.launch(t, SERVE, ready_at=ready_at)
    surplus = len(live) - want
    booting = sorted(fleet.members(SERVE, STARTING), key=lambda k: -fleet.instances[k].ready_at)
    active = sorted(fleet.members(SERVE, ACTIVE), key=lambda k: fleet.instances[k].outstanding)
    for k in (booting + active)[: max(surplus, 0)]:
        fleet.drain(t, k)


class PlanController:
    """Follows a :class:`Plan`, launching ahead by its start-up time."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    def tick(self, t: float, fleet: Fleet) -> float:
        """Size the fleet for now and for ``startup_s`` ahead; the next change."""
        plan = self.plan
        ahead = t + plan.startup_s
        now, soon = plan.at(t), plan.at(ahead)
        live = len(fleet.members(SERVE, STARTING) + fleet.members(SERVE, ACTIVE))
        if soon > live:
            _resize(t, fleet, soon, ready_at=ahead)
        elif live > max(now, soon):
            _resize(t, fleet, max(now, soon), ready_at=ahead)
        return min(plan.boundary_after(t), plan.boundary_after(ahead) - plan.startup_s)


class ReactiveController:
    """Sizes the fleet from the arrival rate of the last ``window_s`` (no forecast)."""

    def __init__(
        self,
        capacity_rps: float,
        *,
        window_s: float = 60.0,
        headroom: float = 0.2,
        min_instances: int = 1,
        max_instances: int | None = None,
        startup_s: float = 120.0,
    ) -> None:
        self.capacity_rps = capacity_rps
        self.window_s = window_s
        self.headroom = headroom
        self.bounds = (min_instances, max_instances or 10**9)
        self.startup_s = startup_s
        #: Whether the first tick (which only starts the clock) has come.
        self.ticked = False

    def tick(self, t: float, fleet: Fleet) -> float:
        """Resize from the last window's rate; the next look is a window later. The
        first tick (the first arrival) only starts the clock: no window has passed."""
        if not self.ticked:
            self.ticked = True
        else:
            rate = fleet.arrived(t - self.window_s, t) / self.window_s
            want = math.ceil(rate * (1 + self.headroom) / self.capacity_rps)
            want = min(max(want, self.bounds[0]), self.bounds[1])
            _resize(t, fleet, want, ready_at=t + self.startup_s)
        return t + self.window_s


def slo_attainment(
    result: SimResult, arrival: np.ndarray, outputs: np.ndarray, slo: SLO | None
) -> float:
    """Share of all requests that completed and met every SLO (seconds); without an
    SLO, the share that completed."""
    if result.outcome.size == 0:
        return float("nan")
    table = timing_table(arrival, result.first, result.end, result.outcome == OK, outputs)
    met = slo.met() if slo is not None else pl.col("outcome") == "ok"
    return float(table.select(met.mean()).item())


def build_policy(
    policy: str, engine: Engine, plan: Plan, start_s: float, router: Router = "least_outstanding"
) -> Cluster:
    """The cluster a policy runs from ``start_s`` (its first arrival): its size
    then and its controller."""
    config = ClusterConfig(replicas=plan.at(start_s), router=router)
    if policy == "plan":
        return Cluster(engine, config, controller=PlanController(plan), startup_s=plan.startup_s)
    if policy == "static":
        return Cluster(engine, config.model_copy(update={"replicas": max(plan.instances)}))
    if policy == "reactive":
        if plan.capacity_rps is None:
            raise InputError(
                "the plan has no capacity_rps, which the reactive policy needs", field="plan"
            )
        reactive = ReactiveController(
            plan.capacity_rps,
            window_s=min(plan.interval_s, 60.0),
            headroom=plan.headroom,
            min_instances=plan.min_instances,
            max_instances=plan.max_instances,
            startup_s=plan.startup_s,
        )
        return Cluster(engine, config, controller=reactive, startup_s=plan.startup_s)
    raise InputError(f"unknown policy {policy!r}; known: {', '.join(POLICIES)}")


def score(
    fleet: Fleet, result: SimResult, arrival: np.ndarray, outputs: np.ndarray, slo: SLO | None
) -> dict[str, float]:
    """One policy's figures: SLO attainment, failures, latency (s), instance-hours."""
    ok = result.outcome == OK
    served = timing_table(arrival, result.first, result.end, ok, outputs).filter(
        pl.col("outcome") == "ok"
    )
    hours = fleet.instance_seconds() / 3600
    span = max(fleet.horizon_s - float(arrival.min(initial=0.0)), 1e-9)
    return {
        "slo_attainment": slo_attainment(result, arrival, outputs, slo),
        "failure_rate": float(1 - ok.mean()) if ok.size else float("nan"),
        "ttft_p99_s": _or_nan(percentile(served["ttft_s"], 99)),
        "e2e_mean_s": _or_nan(served["e2e_s"].mean()),
        "e2e_p99_s": _or_nan(percentile(served["e2e_s"], 99)),
        "instance_hours": hours,
        "mean_instances": hours * 3600 / span,
        "peak_instances": float(peak_instances(fleet)),
    }


def _or_nan(value: Any) -> float:
    return float("nan") if value is None else float(value)


def timeline(fleet: Fleet) -> list[tuple[float, int]]:
    """``(seconds, instances launched and not stopped)`` at every change."""
    events: list[tuple[float, int]] = []
    for x in fleet.instances:
        events.append((x.launched_s, 1))
        if math.isfinite(x.stopped_s):
            events.append((x.stopped_s, -1))
    events.sort()
    out: list[tuple[float, int]] = []
    count = 0
    for t, step in events:
        count += step
        if out and out[-1][0] == t:  # one point per instant: what holds after it
            out[-1] = (t, count)
        else:
            out.append((t, count))
    return out


def peak_instances(fleet: Fleet) -> int:
    """Most instances paid for at once."""
    return max((c for _, c in timeline(fleet)), default=0)


def run_autoscale(
    workload: pl.DataFrame,
    engine: Engine,
    plan: Plan,
    run_dir: str | Path,
    *,
    router: Router = "least_outstanding",
    description: dict[str, Any] | None = None,
    slo: SLO | None = None,
) -> dict[str, Any]:
    """Simulate the part of ``workload`` the plan covers under every policy; write
    the plan policy's run directory (as ``simulate``) plus ``autoscale.json``
    (scores and instance timelines of all policies). Returns that comparison."""
    table = workload.filter(
        (pl.col("arrival_s") >= plan.start_s) & (pl.col("arrival_s") < plan.end_s)
    ).sort("arrival_s", maintain_order=True)
    if table.is_empty():
        a = workload["arrival_s"].to_numpy()
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        raise InputError(
            f"no request of the workload (arrivals {lo:g}-{hi:g} s) falls in the plan's "
            f"span {plan.start_s:g}-{plan.end_s:g} s; simulate the trace the forecast was "
            "made from",
            field="--autoscale",
        )
    slo = slo or plan.slo
    arrival = table["arrival_s"].to_numpy()
    inputs = table["input_tokens"].to_numpy()
    outputs = table["output_tokens"].to_numpy()
    start = float(arrival[0])
    fleets = {p: build_policy(p, engine, plan, start, router) for p in POLICIES}
    if plan.capacity_rps is None:
        del fleets["reactive"]
    with RunDir.create(run_dir, records=False) as out:
        results = {}
        for name, fleet in fleets.items():
            if name == "plan":
                _, results[name] = simulate_into(
                    out,
                    table,
                    fleet,
                    description={**(description or {}), "plan": plan.model_dump()},
                    slo=slo,
                )
            else:
                results[name] = fleet.run(arrival, inputs, outputs)
        comparison = {
            "requests": table.height,
            "span_s": [plan.start_s, plan.end_s],
            "slo": slo.model_dump() if slo is not None else None,
            "policies": {
                name: score(fleet, results[name], arrival, outputs, slo)
                for name, fleet in fleets.items()
            },
            "timelines": {name: timeline(fleet) for name, fleet in fleets.items()},
            "plan": plan.model_dump(),
        }
        out.write_autoscale(comparison)
    return comparison


#: Simulations in a capacity search: the lowest rate, then 14 bisection steps.
CAPACITY_TRIALS = 15


def capacity_rps(
    engine: Engine,
    input_tokens: np.ndarray,
    output_tokens: np.ndarray,
    slo: SLO,
    *,
    attainment: float = 0.99,
    requests: int = 2000,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> float:
    """Requests per second one instance serves with ``attainment`` of requests within
    ``slo``, found by simulation.

    Each trial sends ``requests`` Poisson arrivals at a rate, their lengths drawn
    (seeded) from the given ones, through ``engine``; a bisection on the rate (in
    log space, 14 steps from 0.001 to 10,000 req/s) finds the highest that holds.
    Poisson arrivals make this a steady-state capacity: bursts inside an interval
    are what the plan's headroom is for. ``progress(trials done, trials in all)``
    is called after each of the :data:`CAPACITY_TRIALS` simulations.
    """
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(input_tokens), requests)
    inputs = np.asarray(input_tokens)[pick]
    outputs = np.asarray(output_tokens)[pick]
    gaps = rng.exponential(1.0, requests)

    done = 0

    def holds(rate: float) -> bool:
        nonlocal done
        arrival = np.cumsum(gaps / rate)
        result = engine.run(arrival, inputs, outputs)
        done += 1
        if progress is not None:
            progress(done, CAPACITY_TRIALS)
        return slo_attainment(result, arrival, outputs, slo) >= attainment

    lo, hi = 1e-3, 1e4
    if not holds(lo):
        raise InputError(
            f"one instance misses the SLO for {1 - attainment:.1%} or more of requests even "
            "at 0.001 requests/s: loosen the SLO or pick a faster engine",
            field="--slo",
        )
    for _ in range(CAPACITY_TRIALS - 1):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if holds(mid) else (lo, mid)
    return lo
