"""Fidelity benchmark: fit on the first half of each trace, judge on the held-out half.

For every trace: fit both arrival models on the first half of its span
(``burstlab.workload.holdout``), generate the held-out half's length at the
fitted rate (8 paths each), and print side by side for the held-out half, the
multi-scale model and the paper's per-window Gamma: CV of gaps, IDC at 1/10/60/600 s,
and the KS distances of gaps and per-minute rate. Then time ``fit`` on 10.31M
rows (``benchmarks/ingest.py``'s seeded BurstGPT-shaped trace).

Traces: any files given on the command line (the two real traces in
``../shared/data`` by default, when present), and three synthetic sources of
families *other* than the model's own: a Markov on/off source, a self-exciting
(Hawkes) source and a diurnal source with heavy-tailed surges, logged in whole
seconds, and code-service-like batches logged in milliseconds.

Goals: the multi-scale model within 20% of the held-out half on CV and every
judged IDC, gap KS <= 0.05, and closer than the per-window Gamma on every
statistic; the fit in <= 30 s on 10.31M rows.

Run: ``.venv/bin/python benchmarks/fidelity.py [TRACE ...] [--skip-scale]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import polars as pl

from burstlab import read_trace
from burstlab.trace.schema import conform
from burstlab.workload.fidelity import Fidelity, Stat
from burstlab.workload.holdout import holdout
from burstlab.workload.model import fit

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_TRACES = [
    SHARED / "AzureLLMInferenceTrace_conv.csv",
    SHARED / "mooncake_conversation_trace.jsonl",
]


def _table(arrival: np.ndarray, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    arrival = np.floor(np.sort(arrival))
    n = arrival.size
    return conform(
        pl.DataFrame(
            {
                "arrival_s": arrival - arrival[0],
                "model": ["synthetic"] * n,
                "log_type": ["api"] * n,
                "session_id": pl.Series([None] * n, dtype=pl.String),
                "turn": pl.Series([None] * n, dtype=pl.Int32),
                "input_tokens": rng.integers(1, 2000, n).astype(np.int32),
                "output_tokens": rng.integers(1, 500, n).astype(np.int32),
                "failed": [False] * n,
                "elapsed_s": pl.Series([None] * n, dtype=pl.Float64),
            }
        )
    ).collect()


def on_off(seed: int = 1, span: float = 24 * 3600.0) -> pl.DataFrame:
    """Markov on/off: on spells (mean 30 s) at 8 req/s, off spells (mean 120 s) at 0.3."""
    rng = np.random.default_rng(seed)
    spells = rng.exponential(1.0, 20_000) * np.tile([30.0, 120.0], 10_000)
    edges = np.concatenate([[0.0], np.cumsum(spells)])
    counts = rng.poisson(np.tile([8.0, 0.3], 10_000) * spells)
    which = np.repeat(np.arange(spells.size), counts)
    t = edges[which] + rng.random(which.size) * spells[which]
    return _table(t[t < span], seed)


def hawkes(seed: int = 2, span: float = 24 * 3600.0) -> pl.DataFrame:
    """Self-exciting: background 0.5 req/s, each request triggers 0.8 more on average
    (exponential kernel, 5 s), by branching."""
    rng = np.random.default_rng(seed)
    generation = rng.uniform(0, span, rng.poisson(0.5 * span))
    events = [generation]
    while generation.size:
        children = rng.poisson(0.8, generation.size)
        parents = np.repeat(generation, children)
        generation = parents + rng.exponential(5.0, parents.size)
        generation = generation[generation < span]
        events.append(generation)
    return _table(np.concatenate(events), seed)


def code_bursts(seed: int = 4, span: float = 12 * 3600.0) -> pl.DataFrame:
    """Like a code-completion service: bursts (themselves bursty, 0.1/s) of Pareto-sized
    batches of requests within ~0.2 s of each other, logged to the millisecond."""
    rng = np.random.default_rng(seed)
    starts = np.cumsum(rng.gamma(0.3, 1 / (0.1 * 0.3), 20_000))
    starts = starts[starts < span]
    size = np.minimum((rng.pareto(1.3, starts.size) + 1) * 4, 400).astype(np.int64)
    t = np.repeat(starts, size) + rng.exponential(0.2, int(size.sum()))
    table = _table(np.round(t[t < span] * 1000), seed)  # whole milliseconds
    return table.with_columns(pl.col("arrival_s") / 1000)


def diurnal_surges(seed: int = 3, span: float = 8 * 86_400.0) -> pl.DataFrame:
    """A daily cycle (3x peak to trough) times Pareto-sized surges of 1-10 minutes."""
    rng = np.random.default_rng(seed)
    step = 10.0
    t = np.arange(0.0, span, step)
    rate = 0.6 * (1 + 0.5 * np.cos(2 * np.pi * (t / 86_400 - 14 / 24)))
    surges = int(75 * span / 86_400)
    starts = rng.uniform(0, span, surges)
    for s0, dur, size in zip(
        starts, rng.uniform(60, 600, surges), rng.pareto(1.5, surges) + 1, strict=True
    ):
        rate[(t >= s0) & (t < s0 + dur)] *= min(size, 20.0)
    counts = rng.poisson(rate * step)
    which = np.repeat(np.arange(t.size), counts)
    return _table(t[which] + rng.random(which.size) * step, seed)


def _cell(stat: Stat) -> str:
    return "-" if stat.workload is None else f"{stat.workload:.3g}"


def _row(name: str, get: object, ms: Fidelity, wg: Fidelity) -> tuple[str, bool | None]:
    a, b = get(ms), get(wg)  # type: ignore[operator]
    source = "not judged" if a.source is None else f"{a.source:.3g}"
    if name.startswith("KS"):
        source = "0"
        better = None if a.workload is None else a.workload <= (b.workload or 0) + 1e-12
    else:
        ea, eb = a.error, b.error
        better = None if ea is None or eb is None else abs(ea) <= abs(eb) + 1e-12
    mark = {True: "", False: "  (window-gamma closer)", None: ""}[better]
    print(f"  {name:22s} {source:>11s} {_cell(a):>11s} {_cell(b):>13s}{mark}")
    return name, better


def report(label: str, table: pl.DataFrame) -> dict[str, object]:
    started = time.perf_counter()
    _, check = holdout(table, fraction=0.5, paths=8, seed=0, source=label)
    seconds = time.perf_counter() - started
    ms, wg = check.models["multiscale"], check.models["window-gamma"]
    print(
        f"\n{label}: {table.height:,} requests, timestamps {ms.resolution}; held-out half "
        f"{check.held_out_requests:,} requests over {check.held_out_span_s:,.0f} s "
        f"({seconds:.1f} s for fit + 16 paths)"
    )
    print(f"  {'statistic':22s} {'held out':>11s} {'multiscale':>11s} {'window-gamma':>13s}")
    rows = [
        ("CV of gaps", lambda f: f.cv),
        *((f"IDC {k}", (lambda f, k=k: f.idc[k])) for k in ms.idc),
        ("KS gaps", lambda f: f.ks_gaps),
        ("KS per-minute rate", lambda f: f.ks_minute_rate),
    ]
    closer = [_row(name, get, ms, wg) for name, get in rows]
    stats = [ms.cv, *ms.idc.values()]
    within = all(abs(s.error) <= 0.2 for s in stats if s.error is not None)
    sampling = all(abs(s.error) <= s.tolerance for s in stats if s.error is not None)
    ks_ok = ms.ks_gaps.workload is not None and ms.ks_gaps.workload <= 0.05
    beats = all(b for _, b in closer if b is not None)
    print(f"  multiscale: {ms.verdict}")
    print(
        f"  goals: within 20% {'PASS' if within else 'FAIL'} (or within the held-out half's "
        f"sampling error: {'PASS' if sampling else 'FAIL'}); gap KS <= 0.05 "
        f"{'PASS' if ks_ok else 'FAIL'}; closer than window-gamma on every statistic "
        f"{'PASS' if beats else 'FAIL'}"
    )
    return {"within": within, "ks": ks_ok, "beats": beats}


def scale_fit(rows: int) -> None:
    from ingest import input_file

    path = input_file(rows, 0, Path(__file__).parent / "out")
    table, _ = read_trace(path)
    started = time.perf_counter()
    model = fit(table, source=str(path))
    seconds = time.perf_counter() - started
    arrivals = model.arrivals
    print(
        f"\nfit on {table.height:,} rows: {seconds:.1f} s (goal <= 30 s: "
        f"{'PASS' if seconds <= 30 else 'FAIL'}); gap shape "
        f"{arrivals.gap_shape if arrivals else float('nan'):.3g}, "
        f"{len(arrivals.tau_s) if arrivals else 0} rate components"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("traces", nargs="*", type=Path)
    parser.add_argument("--rows", type=int, default=10_310_000)
    parser.add_argument("--skip-scale", action="store_true")
    args = parser.parse_args()
    traces = args.traces or [p for p in DEFAULT_TRACES if p.exists()]
    for path in traces:
        table, _ = read_trace(path)
        report(path.name, table)
    for name, make in (
        ("synthetic on/off", on_off),
        ("synthetic Hawkes", hawkes),
        ("synthetic code bursts", code_bursts),
        ("synthetic diurnal + surges", diurnal_surges),
    ):
        report(name, make())
    if not args.skip_scale:
        scale_fit(args.rows)


if __name__ == "__main__":
    main()
