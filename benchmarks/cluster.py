"""Cluster simulation speed: simulated requests per wall-second on eight instances.

The Gamma(0.5)/Zipf workload of ``benchmarks/simulate.py`` at eight times the rate
that loads one default replica (Llama-2-7B on an A100-80G) to about 80%, through
eight colocated replicas (least outstanding) and through prefill/decode pools of
4:4, static and with the dynamic ratio controller. Prints requests/s and
iterations/s for each, and the ratio against one replica on an eighth of the
requests (the single-engine fast path) measured in the same run. Goal from the
issue: an 8-replica PD cluster at >= 30,000 requests/s.

Then a 16-configuration sweep (``burstlab experiment grid``: ``engine.max_num_seqs`` 64,
128, 256, 512 x ``engine.num_blocks`` 1000, 2000, 4000, 8000, on one workload at the
80% rate, each configuration writing its run directory) run serially, on a process
pool and on a local Ray, each pool with as many workers as the machine has cores: the
wall time of each, its ratio to serial, and a check that every table is the serial
one. The Ray figure includes starting the local Ray, as the command does.

    .venv/bin/python benchmarks/cluster.py [--requests 200000] [--sweep-requests 300000]
    .venv/bin/python benchmarks/cluster.py --requests 0   # the sweep alone
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).parent))

from burstlab.sim.cluster import Cluster, ClusterConfig
from burstlab.sim.engine import Engine
from burstlab.sim.pd import PDCluster, PDConfig, RatioConfig
from burstlab.sim.spec import EngineSpec
from burstlab.sim.sweep import (
    GRID,
    Executor,
    ProcessPool,
    RayExecutor,
    Serial,
    parse_grid,
    plan_sweep,
    run_sweep,
)
from burstlab.trace.schema import conform
from simulate import rate_at_load, workload

GOAL_PD_RPS = 30_000


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--requests", type=int, default=200_000, help="cluster requests (0: skip the clusters)"
    )
    parser.add_argument(
        "--sweep-requests", type=int, default=300_000, help="requests per sweep run (0: no sweep)"
    )
    args = parser.parse_args()
    engine = EngineSpec().engine_only()
    rate = rate_at_load(engine)
    print(f"engine: Llama-2-7B on A100-80G; one replica ~80% busy at {rate:.2f} req/s")
    if args.requests > 0:
        clusters(engine, rate, args.requests)
    if args.sweep_requests > 0:
        sweep(rate, args.sweep_requests)


def clusters(engine: Engine, rate: float, requests: int) -> None:
    """Eight replicas colocated and as PD pools, against one replica on an eighth."""

    single = workload(requests // 8, rate)
    start = time.perf_counter()
    engine.run(*single)
    one_rps = len(single[0]) / (time.perf_counter() - start)
    print(f"one replica, {len(single[0]):,} requests: {one_rps:,.0f} requests/s")

    work = workload(requests, 8 * rate)
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
        rps = requests / seconds
        print(
            f"{name}, {requests:,} requests: {seconds:.1f} s, {rps:,.0f} requests/s, "
            f"{result.iterations / seconds:,.0f} iterations/s ({rps / one_rps:.2f}x one replica)"
        )
        if name.startswith("PD 4:4 static"):
            verdict = "PASS" if rps >= GOAL_PD_RPS else "FAIL"
            print(f"  goal >= {GOAL_PD_RPS:,} requests/s on the 8-instance PD cluster: {verdict}")


#: The sweep's grid: 4 x 4 = 16 engine configurations.
SWEEP_GRID = ["engine.max_num_seqs=64,128,256,512", "engine.num_blocks=1000,2000,4000,8000"]


def sweep(rate: float, requests: int) -> None:
    """The 16-configuration sweep serially, on a process pool and on a local Ray."""
    arrivals, inputs, outputs = workload(requests, rate, seed=1)
    n = len(arrivals)
    table = conform(
        pl.DataFrame(
            {
                "arrival_s": arrivals,
                "model": ["m"] * n,
                "log_type": ["api"] * n,
                "session_id": [None] * n,
                "turn": [None] * n,
                "input_tokens": inputs.astype(np.int32),
                "output_tokens": outputs.astype(np.int32),
                "failed": [False] * n,
                "elapsed_s": [None] * n,
            },
            schema_overrides={"session_id": pl.String, "turn": pl.Int32, "elapsed_s": pl.Float64},
        )
    ).collect()
    cores = os.cpu_count() or 1
    axes = parse_grid(SWEEP_GRID)
    print(
        f"sweep: 16 configurations ({' x '.join(SWEEP_GRID)}), {n:,} requests each at "
        f"{rate:.2f} req/s, a run directory each; {cores} cores, load average "
        f"{os.getloadavg()[0]:.1f} before it"
    )
    runners: list[tuple[str, Callable[[], Executor]]] = [
        ("serial", Serial),
        (f"process pool, {cores} workers", lambda: ProcessPool(cores)),
    ]
    if importlib.util.find_spec("ray") is not None:
        runners.append((f"local Ray, num_cpus={cores}", lambda: RayExecutor(num_cpus=cores)))
    else:
        print("  local Ray: not installed (pip install 'burstlab[ray]')")
    Serial().run(plan_sweep(GRID, EngineSpec(), ["w"], axes)[:1], {"w": table.head(200)})
    first: pl.DataFrame | None = None
    serial_s = 0.0
    for name, make in runners:
        with tempfile.TemporaryDirectory() as tmp:
            tasks = plan_sweep(GRID, EngineSpec(), ["w"], axes, runs=Path(tmp) / "runs")
            start = time.perf_counter()
            result = run_sweep(tasks, {"w": table}, make())
            seconds = time.perf_counter() - start
        result = result.drop("run")
        if first is None:
            first, serial_s = result, seconds
        same = "the serial table" if result.equals(first) else "DIFFERS from serial"
        print(
            f"  {name}: {seconds:.1f} s, {serial_s / seconds:.2f}x serial "
            f"({16 * n / seconds:,.0f} requests/s in all; {same})"
        )


if __name__ == "__main__":
    main()
