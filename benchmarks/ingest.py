"""Ingest benchmark: load + validate + per-minute counts of a BurstGPT-sized CSV.

What it does
------------
1. Generates (seeded, vectorised with numpy, written by polars) a BurstGPT
   v3-schema CSV with ``--rows`` rows (default 10,310,000, the size of the real
   trace) under ``--out-dir`` (default ``benchmarks/out/``), named
   ``burstgpt_v3_<rows>_s<seed>.csv``; an existing file of that name is reused.
   Arrivals are a cumulative sum of Gamma(shape 0.5) inter-arrivals (bursty)
   spanning ~213 days; ~85% ``ChatGPT`` / 15% ``GPT-4``; ~5% ``Conversation
   log`` rows carrying UUID session ids (sessions of 1-10 turns), the rest
   ``API log`` with an empty session id; lognormal request (1..32000) and
   response tokens, ~2% failures (0 response tokens, empty elapsed time).
2. Measures each task in a fresh Python process, so that import cost and peak
   memory are the task's own:

   - ``burstlab``: ``from burstlab import read_trace``; ``read_trace(path)``
     (parse + validate + normalise); requests per minute with
     ``counts_per_bin`` (binary searches on the sorted arrivals). The goal is
     for this whole sequence.
   - ``pandas``: ``pandas.read_csv(path)`` (C engine) + the same checks (no
     NaN and no negative token counts, non-decreasing timestamps) + requests
     per minute with ``value_counts``: the named reference for the ratio.
   - ``pandas-pyarrow``: the same with ``engine="pyarrow"``, only if pyarrow is
     installed (otherwise printed as skipped).
   - ``polars-bare``: ``polars.read_csv(path)`` alone, no checks: the ceiling
     for any polars-based reader, printed for context.
   - ``burstlab-cache-first`` / ``burstlab-cache-hit``: ``read_trace(path,
     cache=True)`` in two successive processes sharing an empty temporary
     ``BURSTLAB_CACHE``; the first writes the Parquet copy, the second reads it.

Units
-----
``wall s`` is wall-clock seconds for the whole task in the child, from before
its first import to after its last result (best of ``--repeat``); ``import s``
is the library import alone; ``load s`` is the read call alone (for the cache
hit, this is the figure the goal applies to). ``peak GiB`` is the child's peak
resident set (``VmHWM`` from ``/proc/self/status``, GiB = 2**30 bytes).
``ru_maxrss`` is not used: Linux carries the peak of the process image before
``exec`` into it, so a child of a large parent would report the parent's peak.
``pandas/x`` is pandas' wall time divided by the task's. The CSV is read once
by the parent before measuring, so every task starts with a warm page cache.

Goals (2-core reference machine): burstlab load + validate + per-minute counts
<= 3 s and <= 1.5 GiB peak RSS, >= 3x faster than pandas, cache re-read <= 0.5 s.
Failing a goal is reported, not an error: the exit status is 0 unless a
measurement crashes. Results also go to ``<out-dir>/ingest.json``.

Run
---
``.venv/bin/python benchmarks/ingest.py`` (full size; generation takes a minute
the first time), or ``.venv/bin/python benchmarks/ingest.py --rows 200000`` for
a quick smoke run. Options: ``--seed``, ``--repeat``, ``--out-dir``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HEADER = [
    "Timestamp", "Session ID", "Elapsed time", "Model",
    "Request tokens", "Response tokens", "Total tokens", "Log Type",
]  # fmt: skip
SPAN_S = 213 * 86_400  # the real trace covers ~213 days
START_S = 19_440_110.0  # first timestamp, like the real trace's offset
GAMMA_SHAPE = 0.5  # < 1: bursty (coefficient of variation sqrt(2))
GPT4_SHARE = 0.15
CONVERSATION_SHARE = 0.05
FAILED_SHARE = 0.02
MAX_REQUEST = 32_000
MAX_RESPONSE = 16_000

MAIN_TASKS = ("burstlab", "pandas", "pandas-pyarrow", "polars-bare")
CACHE_TASKS = ("burstlab-cache-first", "burstlab-cache-hit")

GOAL_WALL_S = 3.0
GOAL_RSS_GIB = 1.5
GOAL_SPEEDUP = 3.0
GOAL_CACHE_S = 0.5


# --- 1. the input file --------------------------------------------------------------------------


def uuids(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random version-4 UUID strings (8-4-4-4-12 hex), without a Python loop."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    hexed = np.empty((n, 32), dtype=np.uint8)
    hexed[:, 0::2] = digits[raw >> 4]
    hexed[:, 1::2] = digits[raw & 0x0F]
    text = np.full((n, 36), ord("-"), dtype=np.uint8)
    text[:, np.setdiff1d(np.arange(36), [8, 13, 18, 23])] = hexed
    return text.view("S36").ravel().astype("U36")


def session_indices(rng: np.random.Generator, n: int) -> tuple[np.ndarray, int]:
    """Session index for each of ``n`` conversation rows (sessions of 1-10 turns), and the count.

    A session's rows are consecutive among conversation rows, so they
    interleave in time with the API rows between them.
    """
    lengths = rng.integers(1, 11, size=n // 5 + 10)  # mean 5.5 turns: always enough
    idx = np.repeat(np.arange(lengths.size), lengths)[:n]
    return idx, int(idx[-1]) + 1 if n else 0


def generate(rows: int, seed: int, path: Path) -> None:
    """Write a synthetic BurstGPT v3 CSV with ``rows`` rows (numpy draws, one polars write)."""
    import polars as pl

    rng = np.random.default_rng(seed)
    scale = SPAN_S / rows / GAMMA_SHAPE  # mean inter-arrival = shape * scale = span / rows
    arrivals = np.round(START_S + np.cumsum(rng.gamma(GAMMA_SHAPE, scale, rows)), 1)
    conversation = rng.random(rows) < CONVERSATION_SHARE
    request = np.clip(np.rint(rng.lognormal(6.2, 1.1, rows)), 1, MAX_REQUEST).astype(np.int32)
    response = np.clip(np.rint(rng.lognormal(5.3, 1.0, rows)), 1, MAX_RESPONSE).astype(np.int32)
    failed = rng.random(rows) < FAILED_SHARE
    response[failed] = 0
    # decode at ~20-80 tokens/s plus up to a few seconds of queueing and prefill
    rate = rng.uniform(20.0, 80.0, rows)
    elapsed = np.ceil(response / rate + rng.exponential(2.0, rows)).astype(np.int32)

    sessions, n_sessions = session_indices(rng, int(conversation.sum()))
    row_session = np.zeros(rows, dtype=np.uint32)
    row_session[conversation] = sessions
    ids = pl.Series("ids", uuids(rng, max(n_sessions, 1)), dtype=pl.String)
    # a conversation keeps one model; API rows draw theirs independently
    gpt4 = rng.random(rows) < GPT4_SHARE
    gpt4[conversation] = (rng.random(max(n_sessions, 1)) < GPT4_SHARE)[sessions]

    # the file must be valid: anything else is a generator bug, not a reader finding
    if np.any(np.diff(arrivals) < 0):
        raise RuntimeError("generator bug: timestamps must be non-decreasing")
    if request.min() < 1 or response.min() < 0:
        raise RuntimeError("generator bug: token counts out of range")

    frame = pl.DataFrame(
        {
            "Timestamp": arrivals,
            "conversation": conversation,
            "failed": failed,
            "session": row_session,
            "Elapsed time": elapsed,
            "Model": np.where(gpt4, "GPT-4", "ChatGPT"),
            "Request tokens": request,
            "Response tokens": response,
            "Total tokens": request + response,
            "Log Type": np.where(conversation, "Conversation log", "API log"),
        }
    ).select(
        pl.col("Timestamp"),
        pl.when(pl.col("conversation"))
        .then(pl.lit(ids).gather(pl.col("session")))
        .alias("Session ID"),
        pl.when(~pl.col("failed")).then(pl.col("Elapsed time")).alias("Elapsed time"),
        *HEADER[3:],
    )
    assert frame.columns == HEADER
    tmp = path.with_name(path.name + ".tmp")
    frame.write_csv(tmp, float_precision=1)  # nulls are written as empty fields
    tmp.replace(path)


def input_file(rows: int, seed: int, out_dir: Path) -> Path:
    """The benchmark CSV, generated unless a file for these rows and seed exists."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"burstgpt_v3_{rows}_s{seed}.csv"
    if path.exists():
        print(f"reusing {path}")
    else:
        started = time.perf_counter()
        generate(rows, seed, path)
        print(f"generated {path} in {time.perf_counter() - started:.1f} s")
    print(f"input: {rows:,} rows, {path.stat().st_size / 2**20:,.1f} MiB")
    return path


# --- 2. one task, in a child process ----------------------------------------------------------


def peak_rss_gib() -> float:
    """This process's peak resident set (VmHWM), in GiB; see the module docstring."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def measure(task: str, path: str) -> dict[str, Any]:
    """Run ``task`` on ``path`` in this process; return its timings, peak RSS and result sizes."""
    started = time.perf_counter()
    extra: dict[str, Any] = {}
    if task == "polars-bare":
        import polars as pl

        imported = time.perf_counter()
        rows = pl.read_csv(path).height
        loaded = time.perf_counter()
        minutes = None
    elif task in ("pandas", "pandas-pyarrow"):
        import pandas as pd

        imported = time.perf_counter()
        engine = "pyarrow" if task == "pandas-pyarrow" else "c"
        df = pd.read_csv(path, engine=engine)
        tokens = df[["Request tokens", "Response tokens"]]
        if tokens.isna().any().any():
            raise SystemExit("pandas: NaN token count")
        if (tokens < 0).any().any():
            raise SystemExit("pandas: negative token count")
        if not df["Timestamp"].is_monotonic_increasing:
            raise SystemExit("pandas: timestamps not sorted")
        loaded = time.perf_counter()
        per_minute = ((df["Timestamp"] - df["Timestamp"].iloc[0]) // 60).value_counts()
        rows, minutes = len(df), len(per_minute)
        extra["busiest_minute"] = int(per_minute.max())
    else:
        from burstlab import read_trace
        from burstlab.trace.info import counts_per_bin

        imported = time.perf_counter()
        table, report = read_trace(path, cache=task != "burstlab")
        loaded = time.perf_counter()
        per_minute = counts_per_bin(table, 60.0)  # arrival_s is sorted: binary searches
        rows, minutes = table.height, int((per_minute > 0).sum())
        extra["busiest_minute"] = int(per_minute.max())
        extra["cache"] = report.cache
        expected = {"burstlab": "off", "burstlab-cache-first": "miss", "burstlab-cache-hit": "hit"}
        if report.cache != expected[task]:
            raise SystemExit(f"{task}: expected cache {expected[task]!r}, got {report.cache!r}")
    finished = time.perf_counter()
    return {
        "wall_s": finished - started,
        "import_s": imported - started,
        "load_s": loaded - imported,
        "rss_gib": peak_rss_gib(),
        "rows": rows,
        "minutes": minutes,
        **extra,
    }


def run_child(task: str, path: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``task`` in a fresh interpreter; a failure is a crash of the benchmark."""
    out = subprocess.run(
        [sys.executable, __file__, "--measure", task, str(path)],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"{task} failed with exit status {out.returncode}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# --- 3. the run and its report ----------------------------------------------------------------


def warm_page_cache(path: Path) -> None:
    with path.open("rb") as fh:
        while fh.read(16 << 20):
            pass


def run_all(path: Path, repeat: int) -> dict[str, dict[str, Any] | None]:
    """Best-of-``repeat`` results per task; ``None`` for a task that cannot run here."""
    results: dict[str, dict[str, Any] | None] = {}
    for task in MAIN_TASKS:
        if task == "pandas-pyarrow" and importlib.util.find_spec("pyarrow") is None:
            results[task] = None
            continue
        runs = [run_child(task, path) for _ in range(repeat)]
        results[task] = min(runs, key=lambda r: r["wall_s"])
    firsts, hits = [], []
    for _ in range(repeat):  # a new, empty cache for each first read
        with tempfile.TemporaryDirectory(prefix="burstlab-cache-") as cache:
            env = {**os.environ, "BURSTLAB_CACHE": cache}
            firsts.append(run_child("burstlab-cache-first", path, env))
            hits.append(run_child("burstlab-cache-hit", path, env))
    results["burstlab-cache-first"] = min(firsts, key=lambda r: r["wall_s"])
    results["burstlab-cache-hit"] = min(hits, key=lambda r: r["load_s"])
    return results


def report(results: dict[str, dict[str, Any] | None], rows: int) -> dict[str, Any]:
    """Print the table and the goals; return the JSON summary."""
    ours, ref = results["burstlab"], results["pandas"]
    assert ours is not None
    assert ref is not None
    print(
        f"\n{'task':<22} {'wall s':>7} {'import s':>9} {'load s':>7} {'peak GiB':>9} "
        f"{'pandas/x':>9}"
    )
    for task, r in results.items():
        if r is None:
            print(f"{task:<22} skipped (pyarrow is not installed)")
            continue
        print(
            f"{task:<22} {r['wall_s']:>7.2f} {r['import_s']:>9.2f} {r['load_s']:>7.2f} "
            f"{r['rss_gib']:>9.2f} {ref['wall_s'] / r['wall_s']:>8.1f}x"
        )
    for task, r in results.items():  # a cross-check that every reader saw the same trace
        if r is None:
            continue
        if r["rows"] != rows or (r["minutes"] is not None and r["minutes"] != ref["minutes"]):
            print(
                f"warning: {task} read {r['rows']:,} rows / {r['minutes']} minutes, "
                f"expected {rows:,} / {ref['minutes']}"
            )
    speedup = ref["wall_s"] / ours["wall_s"]
    hit = results["burstlab-cache-hit"]
    assert hit is not None
    print(
        f"\npandas / burstlab wall time: {speedup:.2f}x  "
        f"({ref['minutes']:,} active minutes, busiest {ref['busiest_minute']:,} requests)"
    )
    goals = {
        f"burstlab load+validate+per-minute counts <= {GOAL_WALL_S:g} s "
        f"({ours['wall_s']:.2f} s)": ours["wall_s"] <= GOAL_WALL_S,
        f"burstlab peak RSS <= {GOAL_RSS_GIB:g} GiB ({ours['rss_gib']:.2f} GiB)": ours["rss_gib"]
        <= GOAL_RSS_GIB,
        f">= {GOAL_SPEEDUP:g}x faster than pandas ({speedup:.2f}x)": speedup >= GOAL_SPEEDUP,
        f"cache re-read <= {GOAL_CACHE_S:g} s (read_trace {hit['load_s']:.2f} s, "
        f"whole process {hit['wall_s']:.2f} s)": hit["load_s"] <= GOAL_CACHE_S,
    }
    print()
    for name, ok in goals.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    return {
        "rows": rows,
        "results": results,
        "speedup_vs_pandas": speedup,
        "goals": [{"goal": name, "pass": ok} for name, ok in goals.items()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        epilog="See the module docstring for what is measured and in which units.",
    )
    parser.add_argument("--rows", type=int, default=10_310_000, help="rows to generate")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument("--repeat", type=int, default=1, help="runs per task; the best is kept")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument("--measure", nargs=2, metavar=("TASK", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return
    if args.rows < 1 or args.repeat < 1:
        parser.error("--rows and --repeat must be at least 1")

    path = input_file(args.rows, args.seed, args.out_dir)
    warm_page_cache(path)
    summary = report(run_all(path, args.repeat), args.rows)
    summary |= {"seed": args.seed, "repeat": args.repeat, "input": str(path)}
    out = args.out_dir / "ingest.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
