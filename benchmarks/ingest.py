"""Ingest benchmark: load + validate + per-minute counts of a BurstGPT-sized CSV.

Generates (seeded, vectorised, cached under ``benchmarks/out/``) a BurstGPT
v3-schema CSV with 10.31M rows by default: Gamma inter-arrivals (shape 0.5,
bursty) over ~213 days, ChatGPT/GPT-4, 5% conversation rows carrying session
ids, lognormal request and response lengths, ~2% failures (0 response tokens).

Then each task runs in a fresh Python process, so its peak RSS is its own:

- ``burstlab``: ``read_trace`` (parse, validate, normalise) + requests per minute;
- ``pandas``: ``pandas.read_csv`` + the same checks (no NaN, no negative tokens,
  sorted timestamps) + requests per minute: the reference;
- ``polars-bare``: ``polars.read_csv`` alone, no checks: the ceiling for any
  polars-based reader, printed to put the pandas ratio in context;
- ``cache-miss`` / ``cache-hit``: ``read_trace(cache=True)`` twice against an
  empty cache directory; the second is the Parquet re-read.

Times are wall seconds (best of ``--repeat``), RSS is the child's peak resident
set in GiB. Goals on the 2-core reference machine: burstlab <= 3 s and <= 1.5
GiB, at least 3x faster than pandas, cache re-read <= 0.5 s.

Run: ``.venv/bin/python benchmarks/ingest.py`` (``--rows 200000`` for a quick run).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DAYS = 213
HEADER = [
    "Timestamp", "Session ID", "Elapsed time", "Model",
    "Request tokens", "Response tokens", "Total tokens", "Log Type",
]  # fmt: skip


def generate(rows: int, seed: int, path: Path) -> None:
    """Write a synthetic BurstGPT v3 CSV with ``rows`` rows (all numpy, one polars write)."""
    import polars as pl

    rng = np.random.default_rng(seed)
    shape = 0.5
    scale = DAYS * 86400 / rows / shape
    arrivals = np.round(19_440_110.0 + np.cumsum(rng.gamma(shape, scale, rows)), 1)
    conversation = rng.random(rows) < 0.05
    # sessions of a few turns: each conversation row starts a new session with p = 0.3;
    # ids are 36-40 characters like the real UUIDs (two random 64-bit numbers)
    session = np.cumsum(rng.random(int(conversation.sum())) < 0.3)
    halves = rng.integers(0, 2**62, size=(int(session.max()) + 1, 2), dtype=np.int64)
    session_id = pl.format(
        "{}-{}",
        pl.Series(halves[session, 0]).cast(pl.String),
        pl.Series(halves[session, 1]).cast(pl.String),
    )
    request = np.clip(rng.lognormal(6.0, 1.2, rows), 1, 32_000).astype(np.int32)
    response = np.clip(rng.lognormal(5.0, 1.0, rows), 1, 8_000).astype(np.int32)
    response[rng.random(rows) < 0.02] = 0
    ids = pl.Series("Session ID", [None] * rows, dtype=pl.String).scatter(
        np.flatnonzero(conversation), pl.select(session_id).to_series()
    )
    frame = pl.DataFrame(
        {
            "Timestamp": arrivals,
            "Session ID": ids,
            "Elapsed time": rng.integers(1, 120, rows, dtype=np.int32),
            "Model": np.where(rng.random(rows) < 0.85, "ChatGPT", "GPT-4"),
            "Request tokens": request,
            "Response tokens": response,
            "Total tokens": request + response,
            "Log Type": np.where(conversation, "Conversation log", "API log"),
        }
    )
    tmp = path.with_suffix(".tmp")
    frame.select(HEADER).write_csv(tmp)
    tmp.replace(path)


def measure(task: str, path: str) -> dict[str, float]:
    """Run one task in this (child) process; return wall seconds and peak RSS."""
    started = time.perf_counter()
    if task == "polars-bare":
        import polars as pl

        n_minutes = pl.read_csv(path).height  # parsing alone: the ceiling for any polars reader
        load_s = time.perf_counter() - started
    elif task == "pandas":
        import pandas as pd

        df = pd.read_csv(path)
        tokens = df[["Request tokens", "Response tokens"]]
        if tokens.isna().any().any() or (tokens < 0).any().any():
            raise SystemExit("bad tokens")
        if not df["Timestamp"].is_monotonic_increasing:
            raise SystemExit("unsorted")
        minutes = ((df["Timestamp"] - df["Timestamp"].iloc[0]) // 60).value_counts()
        n_minutes = len(minutes)
        load_s = time.perf_counter() - started
    else:
        from burstlab import read_trace
        from burstlab.trace.info import counts_per_bin

        t0 = time.perf_counter()
        table, report = read_trace(path, cache=task.startswith("cache"))
        load_s = time.perf_counter() - t0
        per_minute = counts_per_bin(table, 60.0)
        n_minutes = int((per_minute > 0).sum())
        if task.startswith("cache") and report.cache != task.removeprefix("cache-"):
            raise SystemExit(f"expected a cache {task}, got {report.cache}")
    wall = time.perf_counter() - started
    rss = peak_rss_gib()
    return {"wall_s": wall, "load_s": load_s, "rss_gib": rss, "minutes": n_minutes}


def peak_rss_gib() -> float:
    """This process's peak resident set (VmHWM), in GiB.

    ``ru_maxrss`` survives ``exec`` on Linux, so a child started by a big
    parent would report the parent's peak; VmHWM belongs to the new image.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_child(task: str, path: Path, env: dict[str, str] | None = None) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--measure", task, str(path)],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"{task} failed:\n{out.stderr}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_310_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument("--measure", nargs=2, metavar=("TASK", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return

    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"burstgpt_v3_{args.rows}_s{args.seed}.csv"
    if not path.exists():
        started = time.perf_counter()
        generate(args.rows, args.seed, path)
        print(f"generated {path} in {time.perf_counter() - started:.1f} s")
    print(f"input: {path} ({path.stat().st_size / 2**20:,.0f} MiB, {args.rows:,} rows)")

    results: dict[str, dict[str, float]] = {}
    for task in ("burstlab", "pandas", "polars-bare"):
        runs = [run_child(task, path) for _ in range(args.repeat)]
        results[task] = min(runs, key=lambda r: r["wall_s"])
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "BURSTLAB_CACHE": cache}
        results["cache-miss"] = run_child("cache-miss", path, env)
        results["cache-hit"] = min(
            (run_child("cache-hit", path, env) for _ in range(args.repeat)),
            key=lambda r: r["load_s"],
        )
    if results["burstlab"]["minutes"] != results["pandas"]["minutes"]:  # a correctness check
        print("warning: burstlab and pandas disagree on the number of minutes")

    print(f"\n{'task':<12} {'wall s':>8} {'load s':>8} {'peak RSS GiB':>13}")
    for task, r in results.items():
        print(f"{task:<12} {r['wall_s']:>8.2f} {r['load_s']:>8.2f} {r['rss_gib']:>13.2f}")
    ours, ref = results["burstlab"], results["pandas"]
    speedup = ref["wall_s"] / ours["wall_s"]
    print(
        f"\npandas / burstlab wall time: {speedup:.1f}x "
        f"(pandas / bare polars.read_csv: {ref['wall_s'] / results['polars-bare']['wall_s']:.1f}x)"
    )
    goals = [
        ("burstlab load+validate+counts <= 3 s", ours["wall_s"] <= 3.0),
        ("burstlab peak RSS <= 1.5 GiB", ours["rss_gib"] <= 1.5),
        (">= 3x faster than pandas", speedup >= 3.0),
        ("Parquet cache re-read <= 0.5 s", results["cache-hit"]["load_s"] <= 0.5),
    ]
    for name, ok in goals:
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    summary = {"rows": args.rows, "results": results, "speedup_vs_pandas": speedup}
    (args.out_dir / "ingest.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
