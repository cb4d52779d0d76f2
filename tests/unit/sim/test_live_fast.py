"""Live engines and fleets give the same token times whether the kernel evaluates
the cost model itself (:class:`~burstlab.sim.cost.Linear`) or asks Python for every
iteration (``support.sim.LinearCost``, the same formula), and a live engine
announces every token by the start of its iteration either way."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from burstlab.sim.cluster import Cluster, ClusterConfig
from burstlab.sim.cost import Linear
from burstlab.sim.engine import TOKEN, Engine, EngineConfig, OnlineEngine, SimResult
from burstlab.sim.pd import PDCluster, PDConfig, RatioConfig
from support.sim import LinearCost, workload

CONFIGS = {
    "roomy": {"max_num_seqs": 16, "num_blocks": 600},
    "full queue": {"max_num_seqs": 8, "num_blocks": 400, "queue_cap": 10, "queue_timeout_s": 3.0},
    "swap": {"max_num_seqs": 64, "num_blocks": 300, "preemption": "swap"},
    "srf": {"max_num_seqs": 32, "scheduler": "srf", "queue_timeout_s": 5.0},
    "no chunking": {
        "max_num_seqs": 4,
        "queue_cap": 5,
        "queue_timeout_s": 1.0,
        "chunked_prefill": False,
        "max_batched_tokens": 2048,
    },
}


LINEAR = Linear(c0=0.004, c_prefill=5e-5, c_attn=1e-9, c_decode=2e-5, c_ctx=2e-8)


def cost(compiled: bool) -> Any:
    """The same linear model, compiled into the kernel or called from Python."""
    return LINEAR if compiled else LinearCost()


def same(fast: SimResult, slow: SimResult) -> None:
    assert np.array_equal(fast.outcome, slow.outcome)
    assert np.array_equal(fast.preemptions, slow.preemptions)
    assert np.allclose(fast.end, slow.end, atol=1e-6, equal_nan=True)
    assert np.allclose(fast.first, slow.first, atol=1e-6, equal_nan=True)
    assert fast.iterations == slow.iterations
    for rid in range(fast.outcome.size):
        a, b = fast.token_times(rid), slow.token_times(rid)
        assert a.size == b.size, rid
        assert np.allclose(a, b, atol=1e-6), rid


def both(make: Any, cfg: dict[str, Any], work: tuple[np.ndarray, ...]) -> tuple[Any, Any]:
    runs = []
    for compiled in (True, False):
        fleet = make(Engine(EngineConfig(**cfg), cost(compiled)))
        runs.append((fleet, fleet.run(*work)))
    same(runs[0][1], runs[1][1])
    return runs[0][0], runs[1][0]


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("router", ["least_outstanding", "kv_aware"])
@pytest.mark.slow
def test_a_colocated_cluster_gives_the_token_times_of_stepping(name: str, router: str) -> None:
    work = workload(800, 20.0, seed=len(name))
    both(lambda e: Cluster(e, ClusterConfig(replicas=3, router=router)), CONFIGS[name], work)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.slow
def test_a_pd_cluster_gives_the_token_times_of_stepping(name: str) -> None:
    work = workload(800, 20.0, seed=len(name))
    both(lambda e: PDCluster(e, PDConfig(prefill=2, decode=2)), CONFIGS[name], work)


def test_a_dynamic_pd_cluster_moves_the_same_either_way() -> None:
    work = workload(1500, 25.0, seed=0)
    ratio = RatioConfig(interval_s=1.0, cooldown_s=3.0, switch_s=1.0)
    fast, slow = both(
        lambda e: PDCluster(e, PDConfig(prefill=2, decode=2, dynamic=ratio)), CONFIGS["roomy"], work
    )
    assert fast.controller.moves  # the controller moved instances
    assert fast.controller.moves == slow.controller.moves
    assert fast.log == slow.log


def live_run(
    name: str, compiled: bool, work: tuple[np.ndarray, ...], checks: np.ndarray
) -> tuple[list[tuple[int, float, float, float]], dict[tuple[int, int], list[float]]]:
    """Feed ``work`` to a live engine, advancing it at each arrival and at each of
    ``checks`` (seconds); after every check: tokens heard, the latest, the next
    boundary and KV blocks in use; and every event heard, by request and code."""
    arrivals, prompts, outputs = work
    heard: list[tuple[int, int, float]] = []
    engine = Engine(EngineConfig(**CONFIGS[name]), cost(compiled))
    live = OnlineEngine(engine, lambda rid, code, when: heard.append((rid, code, when)))
    marks = []
    i = 0
    for now in checks.tolist():
        while i < arrivals.size and arrivals[i] <= now:
            live.advance(float(arrivals[i]))
            live.add(float(arrivals[i]), int(prompts[i]), int(outputs[i]))
            i += 1
        boundary = live.advance(now)
        tokens = [when for _, code, when in heard if code == TOKEN]
        kv = live.state()["kv_blocks_used"]
        marks.append((len(tokens), max(tokens, default=0.0), boundary or -1.0, kv))
    while live.advance(1e12) is not None:
        pass
    events: dict[tuple[int, int], list[float]] = {}
    for rid, code, when in heard:
        events.setdefault((rid, code), []).append(when)
    return marks, events


@pytest.mark.parametrize("name", ["roomy", "full queue", "swap"])
@pytest.mark.slow
def test_a_live_engine_announces_every_token_the_same_either_way(name: str) -> None:
    """Advanced at arrivals and at random instants in between, the live engine has
    announced, after each call, exactly the tokens stepping has (those of the
    iterations starting by ``now``), returns the same next boundary and shows the
    same KV use; in the end every token and end at the same time."""
    work = workload(300, 10.0, seed=5)
    checks = np.sort(np.random.default_rng(0).uniform(0, work[0][-1] + 60, 3000))
    fast_marks, fast_events = live_run(name, True, work, checks)
    slow_marks, slow_events = live_run(name, False, work, checks)
    assert fast_events.keys() == slow_events.keys()
    for key, times in slow_events.items():
        assert np.allclose(fast_events[key], times, atol=1e-6), key
    for a, b in zip(fast_marks, slow_marks, strict=True):
        assert a[0] == b[0]
        assert a[3] == b[3]
        assert abs(a[1] - b[1]) <= 1e-6
        assert abs(a[2] - b[2]) <= 1e-6
