"""``burstlab simulate`` end to end, as a process: wall time, peak memory, output size.

Writes the seeded Gamma(shape 0.5) / Zipf workload of ``benchmarks/simulate.py`` (the
same rate search: about 80% load on the default engine, Llama-2-7B on an A100-80G,
roofline cost) as a Parquet request table in a temporary folder, runs
``burstlab simulate WORKLOAD -o RUN`` as a child process (results, summary and
report included), and prints its wall time, its peak RSS (``getrusage`` of the
children), the run directory's size and requests per second. ``--requests 10310000``
is a BurstGPT-sized run. Goals from issue 15: 1M requests in <= 30 s; 10.31M in
<= 3 min and <= 4 GiB peak.

    .venv/bin/python benchmarks/simulate_e2e.py [--requests 1000000] [--token-times]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from burstlab.sim.spec import EngineSpec
from burstlab.trace.io import write_table
from burstlab.trace.schema import conform

sys.path.insert(0, str(Path(__file__).resolve().parent))
from simulate import rate_at_load, workload

BIN = Path(sys.executable).with_name("burstlab")
#: (requests at least, seconds at most, peak GiB at most or None) per goal.
GOALS = ((10_000_000, 180.0, 4.0), (1_000_000, 30.0, None))


def rate_at_80_percent() -> float:
    """The rate (req/s) whose busy share on the default engine is 0.8 (as
    ``benchmarks/simulate.py`` finds it)."""
    return rate_at_load(EngineSpec().build())


def write_workload(path: Path, n: int, rate: float) -> None:
    """The workload as a canonical request table (what ``simulate`` reads)."""
    arrivals, inputs, outputs = workload(n, rate)
    table = pl.DataFrame(
        {
            "arrival_s": arrivals,
            "model": pl.repeat("Llama-2-7B", n, eager=True),
            "log_type": pl.repeat("api", n, eager=True),
            "session_id": pl.repeat(None, n, dtype=pl.String, eager=True),
            "turn": pl.repeat(None, n, dtype=pl.Int32, eager=True),
            "input_tokens": inputs.astype(np.int32),
            "output_tokens": outputs.astype(np.int32),
            "failed": pl.repeat(False, n, eager=True),
            "elapsed_s": pl.repeat(None, n, dtype=pl.Float64, eager=True),
        }
    )
    write_table(conform(table).collect(), path)


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--token-times", action="store_true", help="pass --token-times")
    parser.add_argument("--no-report", action="store_true", help="pass --no-report")
    args = parser.parse_args()
    rate = rate_at_80_percent()
    print(f"engine: Llama-2-7B on A100-80G (roofline); ~80% load at {rate:.2f} req/s")
    with tempfile.TemporaryDirectory(prefix="burstlab-e2e-") as tmp:
        work = Path(tmp) / "workload.parquet"
        write_workload(work, args.requests, rate)
        out = Path(tmp) / "run"
        command = [str(BIN), "simulate", str(work), "-o", str(out)]
        command += ["--token-times"] if args.token_times else []
        command += ["--no-report"] if args.no_report else []
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
        if done.returncode != 0:
            print(done.stdout, done.stderr, sep="\n")
            raise SystemExit(f"burstlab simulate exited {done.returncode}")
        size = folder_bytes(out)
        files = ", ".join(
            f"{p.name} {p.stat().st_size / 2**20:.1f} MiB" for p in sorted(out.iterdir())
        )
        for line in done.stdout.splitlines():
            if line.startswith(("simulated ", "scheduled ")):
                print(line)
        print(
            f"burstlab simulate, {args.requests:,} requests"
            f"{' with token times' if args.token_times else ''}: {seconds:.1f} s wall, "
            f"peak RSS {peak_gib:.2f} GiB, output {size / 2**20:.1f} MiB "
            f"({size / args.requests:.0f} B/request), {args.requests / seconds:,.0f} requests/s"
        )
        print(f"files: {files}")
    for least, limit_s, limit_gib in GOALS:
        if args.requests >= least:
            ok = seconds <= limit_s and (limit_gib is None or peak_gib <= limit_gib)
            memory = f" and <= {limit_gib:g} GiB ({peak_gib:.2f})" if limit_gib else ""
            print(
                f"{'PASS' if ok else 'FAIL'}  {least:,}+ requests in <= {limit_s:g} s "
                f"({seconds:.1f}){memory}"
            )
            break


if __name__ == "__main__":
    main()
