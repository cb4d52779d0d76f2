"""Cluster simulation speed: simulated requests per wall-second on eight instances.

The Gamma(0.5)/Zipf workload of ``benchmarks/simulate.py`` at eight times the rate
that loads one default replica (Llama-2-7B on an A100-80G) to about 80%, through
eight colocated replicas (least outstanding) and through prefill/decode pools of
4:4, static and with the dynamic ratio controller. Prints requests/s and
iterations/s for each, and the ratio against one replica on an eighth of the
requests (the single-engine fast path) measured in the same run. Goal from the
issue: an 8-replica PD cluster at >= 30,000 requests/s.

    .venv/bin/python benchmarks/cluster.py [--requests 200000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from burstlab.sim.cluster import Cluster, ClusterConfig
from burstlab.sim.pd import PDCluster, PDConfig, RatioConfig
from burstlab.sim.spec import EngineSpec
from simulate import busy_share, workload

GOAL_PD_RPS = 30_000


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--requests", type=int, default=200_000)
    args = parser.parse_args()
    engine = EngineSpec().engine_only()
    lo, hi = 0.5, 50.0
    for _ in range(12):
        mid = (lo * hi) ** 0.5
        arrivals, inputs, outputs = workload(5000, mid)
        result = engine.run(arrivals, inputs, outputs)
        lo, hi = (mid, hi) if busy_share(result, float(arrivals[-1])) < 0.8 else (lo, mid)
    rate = lo
    print(f"engine: Llama-2-7B on A100-80G; one replica ~80% busy at {rate:.2f} req/s")

    single = workload(args.requests // 8, rate)
    start = time.perf_counter()
    engine.run(*single)
    one_rps = len(single[0]) / (time.perf_counter() - start)
    print(f"one replica (fast path), {len(single[0]):,} requests: {one_rps:,.0f} requests/s")

    work = workload(args.requests, 8 * rate)
    setups = {
        "8 colocated replicas": Cluster(
            engine, ClusterConfig(replicas=8, router="least_outstanding")
        ),
        "PD 4:4 static": PDCluster(engine, PDConfig(prefill=4, decode=4)),
        "PD 4:4 dynamic": PDCluster(engine, PDConfig(prefill=4, decode=4, dynamic=RatioConfig())),
    }
    for name, cluster in setups.items():
        start = time.perf_counter()
        result = cluster.run(*work)
        seconds = time.perf_counter() - start
        rps = args.requests / seconds
        print(
            f"{name}, {args.requests:,} requests: {seconds:.1f} s, {rps:,.0f} requests/s, "
            f"{result.iterations / seconds:,.0f} iterations/s ({rps / one_rps:.2f}x one replica)"
        )
        if name.startswith("PD 4:4 static"):
            verdict = "PASS" if rps >= GOAL_PD_RPS else "FAIL"
            print(f"  goal >= {GOAL_PD_RPS:,} requests/s on the 8-instance PD cluster: {verdict}")


if __name__ == "__main__":
    main()
