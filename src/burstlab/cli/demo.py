"""``burstlab demo``: the whole loop on the bundled sample, with nothing to download.

Read the bundled Azure 2023 conversation trace, replay its busiest minutes
faster than real time, start the fixed-timing mock server on a free port of
127.0.0.1, benchmark it, and write the summary and the HTML report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

#: The replayed window and its speed-up: about 30 s of load at ~20 req/s.
DEMO_WINDOW = "2m"
DEMO_SPEEDUP = 4.0
#: Longest response the demo asks for: keeps the tail of the run short.
DEMO_MAX_OUTPUT = 300


def demo(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Run directory (default: the next free burstlab-demo/run-N)."
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live display.")] = False,
) -> None:
    """Replay the bundled trace's busiest minutes against a local mock server and
    report: trace info, the benchmark summary, and report.html.

    Example: burstlab demo -o demo-run
    """
    import polars as pl
    from rich.console import Console

    from burstlab.analyze.results import parse_slo
    from burstlab.bench.progress import LiveProgress
    from burstlab.bench.run import BenchConfig, bench
    from burstlab.cli.bench_cmd import print_summary
    from burstlab.cli.trace_cmds import print_info, warn
    from burstlab.core.units import parse_duration
    from burstlab.report.bench import render_run
    from burstlab.server.fixed import FixedTiming, make_app, serve_in_thread
    from burstlab.trace.info import trace_info
    from burstlab.trace.readers import read_trace
    from burstlab.workload.replay import ReplaySpec, replay

    console = Console(stderr=True)
    out = out or _next_run_dir(Path("burstlab-demo"))
    table, report = read_trace("sample")
    print_info(trace_info(table, report))
    warn(report)
    spec = ReplaySpec(busiest_s=parse_duration(DEMO_WINDOW), speedup=DEMO_SPEEDUP)
    workload = replay(table, spec).with_columns(pl.col("output_tokens").clip(1, DEMO_MAX_OUTPUT))
    span = float(workload["arrival_s"].max() or 0.0)  # type: ignore[arg-type]
    typer.echo(
        f"\nworkload: the busiest {DEMO_WINDOW} of the sample at {DEMO_SPEEDUP:g}x: "
        f"{workload.height} requests over {span:.1f} s (responses capped at "
        f"{DEMO_MAX_OUTPUT} tokens)"
    )
    timing = FixedTiming(ttft=0.05, itl=0.01)
    with serve_in_thread(make_app(timing)) as url:
        typer.echo(f"mock server: {url} (fixed ttft=50 ms, itl=10 ms)\n")
        config = BenchConfig(url=url, backend="vllm", slo=parse_slo("ttft=0.5,tpot=0.05,e2e=10"))
        result = bench(workload, config, out, progress=None if quiet else LiveProgress(console))
    print_summary(result.summary, Console())
    html = render_run(out)
    typer.echo(f"wrote {out / 'records.jsonl'}, {out / 'summary.json'} and {html}")


def _next_run_dir(base: Path) -> Path:
    """``base/run-N`` for the first N not taken, so a second demo keeps the first's results."""
    n = 1
    while (base / f"run-{n}").exists():
        n += 1
    return base / f"run-{n}"
