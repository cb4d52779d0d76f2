"""Replicas behind a router: one replica is the engine; more share the load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from burstlab.sim.cluster import Cluster, ClusterConfig
from burstlab.sim.engine import OK, PENDING, Engine, EngineConfig
from burstlab.sim.simulate import simulate
from support.frames import workload
from support.sim import LinearCost
from support.sim import workload as lengths


def test_one_replica_is_the_engine() -> None:
    arrivals, prompts, outputs = lengths(300, 8.0, seed=4)
    cfg = EngineConfig(num_blocks=500, max_num_seqs=16)
    alone = Engine(cfg, LinearCost()).run(arrivals, prompts, outputs)
    cluster = Cluster(Engine(cfg, LinearCost()), ClusterConfig(replicas=1))
    res = cluster.run(arrivals, prompts, outputs)
    assert np.array_equal(res.outcome, alone.outcome)
    for rid in range(arrivals.size):
        assert np.allclose(res.token_times(rid), alone.token_times(rid), atol=1e-9)


@pytest.mark.parametrize("router", ["round_robin", "least_outstanding", "kv_aware"])
def test_four_replicas_carry_four_times_the_load(router: str) -> None:
    cfg = EngineConfig(max_num_seqs=16)
    one = lengths(600, 6.0, seed=9)
    four = lengths(2400, 24.0, seed=9)
    e_one = Engine(cfg, LinearCost()).run(*one)
    e_four = Cluster(Engine(cfg, LinearCost()), ClusterConfig(replicas=4, router=router)).run(*four)
    assert not (e_four.outcome == PENDING).any()
    assert (e_four.outcome == OK).all()
    mean_one = np.mean(e_one.end - one[0])
    mean_four = np.mean(e_four.end - four[0])
    assert mean_four < 1.5 * mean_one


def test_cluster_run_directory_has_replica_telemetry(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    table = workload(np.sort(rng.uniform(0, 30, 200)).tolist(), input_tokens=200, output_tokens=30)
    cluster = Cluster(Engine(EngineConfig(), LinearCost()), ClusterConfig(replicas=3))
    summary = simulate(table, cluster, tmp_path / "run").summary
    assert summary.counts.ok == 200
    telemetry = pl.read_parquet(tmp_path / "run" / "telemetry.parquet")
    assert set(telemetry["replica"].to_list()) == {0, 1, 2}
