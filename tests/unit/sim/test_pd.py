"""Prefill/decode disaggregation: tokens from both pools, the KV transfer, less jitter."""

from __future__ import annotations

import numpy as np

from burstlab.sim.cluster import Cluster, ClusterConfig
from burstlab.sim.engine import OK, PENDING, Engine, EngineConfig
from burstlab.sim.pd import PDCluster, PDConfig
from support.sim import LinearCost
from support.sim import workload as lengths


def test_every_request_gets_all_its_tokens_across_the_pools() -> None:
    arrivals, prompts, outputs = lengths(400, 6.0, seed=3)
    engine = Engine(EngineConfig(max_num_seqs=32), LinearCost())
    res = PDCluster(engine, PDConfig(prefill=1, decode=2)).run(arrivals, prompts, outputs)
    assert not (res.outcome == PENDING).any()
    assert (res.outcome == OK).all()
    for rid in range(arrivals.size):
        times = res.token_times(rid)
        assert times.size == max(outputs[rid], 1)
        assert np.all(np.diff(times) > 0)


def test_kv_transfer_time_sits_between_first_and_second_token() -> None:
    cost = LinearCost()
    engine = Engine(EngineConfig(), cost)
    slow_link = PDConfig(link_bandwidth=1e6, link_latency_s=0.0)  # 1 MB/s
    res = PDCluster(engine, slow_link).run(np.array([0.0]), np.array([100]), np.array([3]))
    t = res.token_times(0)
    transfer = 100 * EngineConfig().kv_bytes_per_token / 1e6
    assert t[1] - t[0] >= transfer
    assert t[1] - t[0] < transfer + 0.1


def test_disaggregation_removes_prefill_interference_from_tpot() -> None:
    arrivals, prompts, outputs = lengths(800, 12.0, seed=6)
    engine = Engine(EngineConfig(max_num_seqs=64), LinearCost())
    pd = PDCluster(engine, PDConfig(prefill=1, decode=1, link_bandwidth=300e9))
    mixed = Cluster(engine, ClusterConfig(replicas=2, router="least_outstanding"))

    def tpot_p99(res):  # type: ignore[no-untyped-def]
        per = [np.diff(res.token_times(r)).mean() for r in range(arrivals.size) if outputs[r] > 2]
        return float(np.percentile(per, 99))

    assert tpot_p99(pd.run(arrivals, prompts, outputs)) < tpot_p99(
        mixed.run(arrivals, prompts, outputs)
    )
