"""Analyze benchmark: the full ``burstlab analyze`` pipeline on the 10.31M-row trace.

Uses the seeded BurstGPT v3 CSV of ``benchmarks/ingest.py`` (generated if
missing) and times, in this process, wall seconds for: reading the trace,
the whole analysis (burstiness overall and per 20-min window, periodicity,
length fits per class, conversations, failures), and rendering the report
with and without plots. Goals on the 2-core reference machine: at most 20 s
without plot rendering and 60 s with it (reading included).

Run: ``.venv/bin/python benchmarks/analyze.py`` (``--rows 200000`` for a quick run).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from ingest import input_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_310_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "out")
    args = parser.parse_args()
    path = input_file(args.rows, args.seed, args.out_dir)

    from burstlab.analyze.summary import analyze
    from burstlab.report.analysis import render
    from burstlab.trace.readers import read_trace

    t0 = time.perf_counter()
    table, report = read_trace(path)
    t1 = time.perf_counter()
    summary = analyze(table, report)
    t2 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        render(Path(tmp) / "bare.html", [(table, summary)], with_plots=False)
        t3 = time.perf_counter()
        render(Path(tmp) / "full.html", [(table, summary)], with_plots=True)
        t4 = time.perf_counter()
    no_plots = t3 - t0
    with_plots = (t1 - t0) + (t2 - t1) + (t4 - t3)
    print(f"\n{'step':<28} {'seconds':>8}")
    for name, seconds in [
        ("read + validate", t1 - t0),
        ("analysis", t2 - t1),
        ("report without plots", t3 - t2),
        ("report with plots", t4 - t3),
    ]:
        print(f"{name:<28} {seconds:>8.2f}")
    windows = len(summary.burstiness.windows.start_s)
    print(f"\n{summary.rows:,} requests, {windows:,} windows, {len(summary.lengths)} classes")
    print(
        f"{'PASS' if no_plots <= 20 else 'FAIL'}  full analysis without plots <= 20 s "
        f"({no_plots:.2f} s)"
    )
    print(
        f"{'PASS' if with_plots <= 60 else 'FAIL'}  full analysis with plots <= 60 s "
        f"({with_plots:.2f} s)"
    )


if __name__ == "__main__":
    main()
