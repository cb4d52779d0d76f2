"""Workload-model benchmark: fit on the 10.31M-row trace, then sample 10M requests.

Uses the seeded BurstGPT v3 CSV of ``benchmarks/ingest.py`` (generated if
missing). Times, in wall seconds: reading the trace (not part of the goal),
``fit`` (the multi-scale arrival model with its structure choice, the per-window
Gamma, class mix, length and response models), and ``WorkloadModel.sample`` of 10M
requests (arrivals, classes, lengths, failures, canonical table). Goals on the
2-core reference machine: fit at most 30 s (issue 12's bar for the fuller model;
20 s before it), sampling 10M requests at most 5 s.

Run: ``.venv/bin/python benchmarks/generate.py`` (``--rows 200000`` for a quick run).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ingest import input_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_310_000)
    parser.add_argument("--requests", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "out")
    args = parser.parse_args()
    path = input_file(args.rows, args.seed, args.out_dir)

    from burstlab.trace.readers import read_trace
    from burstlab.workload.model import fit

    t0 = time.perf_counter()
    table, _ = read_trace(path)
    t1 = time.perf_counter()
    model = fit(table)
    t2 = time.perf_counter()
    duration = args.requests / model.mean_rps  # the fitted span holds ~this many at 1x
    workload = model.sample(duration_s=duration, seed=args.seed)
    t3 = time.perf_counter()
    fit_s, sample_s = t2 - t1, t3 - t2
    print(
        f"\nread {t1 - t0:.2f} s; fit {fit_s:.2f} s ({len(model.window_gamma.windows):,} windows, "
        f"{len(model.classes)} classes); sampled {workload.height:,} requests in "
        f"{sample_s:.2f} s"
    )
    print(
        f"{'PASS' if fit_s <= 30 else 'FAIL'}  fit on {table.height:,} rows <= 30 s ({fit_s:.2f} s)"
    )
    per_10m = sample_s * 10_000_000 / max(workload.height, 1)
    print(
        f"{'PASS' if per_10m <= 5 else 'FAIL'}  sample 10M requests <= 5 s "
        f"({per_10m:.2f} s per 10M)"
    )


if __name__ == "__main__":
    main()
