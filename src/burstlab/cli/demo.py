"""``burstlab demo``: the whole loop on the bundled sample, with nothing to download.

Read the bundled Azure 2023 conversation trace, replay its busiest minute
twice as fast, start the mock server timed by the simulated engine (Llama-3-8B
on one H100-80G, vLLM-like scheduling) on a free port of 127.0.0.1, benchmark
it, and write the summary and the HTML report. The same workload is also
simulated offline, and the two are compared: the measured latencies should be
the simulated ones plus the HTTP path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

#: The replayed window and its speed-up: 522 requests in 30 s (~17 req/s), close to
#: what the demo engine can serve, so the burst shows in the tail latencies.
DEMO_WINDOW = "1m"
DEMO_SPEEDUP = 2.0
#: The engine the mock server simulates.
DEMO_GPU, DEMO_MODEL = "H100-80G", "Llama-3-8B"
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
    """Replay the bundled trace's busiest minute against a local mock server timed by
    a simulated engine, and report: trace info, the benchmark summary, the offline
    simulation's figures beside the measured ones, and report.html.

    Example: burstlab demo -o demo-run
    """
    import polars as pl
    from rich.console import Console

    from burstlab.bench.progress import LiveProgress
    from burstlab.bench.run import BenchConfig, bench
    from burstlab.cli.bench_cmd import print_summary
    from burstlab.cli.trace_cmds import print_info, warn
    from burstlab.core.units import parse_duration
    from burstlab.report.run import render_run
    from burstlab.results.slo import parse_slo
    from burstlab.server.engine import make_engine_app
    from burstlab.server.hosting import serve_in_thread
    from burstlab.sim.experiment import metrics
    from burstlab.sim.spec import EngineSpec
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
    engine = EngineSpec(gpu=DEMO_GPU, model=DEMO_MODEL).engine_only()
    with serve_in_thread(make_engine_app(engine, model=DEMO_MODEL)) as url:
        typer.echo(f"mock server: {url} (simulated {DEMO_MODEL} on one {DEMO_GPU})\n")
        config = BenchConfig(url=url, backend="vllm", slo=parse_slo("ttft=0.5,tpot=0.05,e2e=20"))
        result = bench(workload, config, out, progress=None if quiet else LiveProgress(console))
    print_summary(result.summary, Console())
    arrival = workload["arrival_s"].to_numpy()
    outputs = workload["output_tokens"].to_numpy()
    offline = metrics(
        engine.run(arrival, workload["input_tokens"].to_numpy(), outputs), arrival, outputs
    )
    measured = result.summary.metrics
    typer.echo(
        "offline simulation of the same workload vs measured over HTTP: "
        f"TTFT mean {offline['ttft_mean_s'] * 1e3:.0f} vs "
        f"{(measured['ttft_s'].mean or 0) * 1e3:.0f} ms, E2E mean {offline['e2e_mean_s']:.2f} vs "
        f"{measured['e2e_s'].mean or 0:.2f} s"
    )
    html = render_run(out)
    typer.echo(f"wrote the run to {out} and its report to {html}")


def _next_run_dir(base: Path) -> Path:
    """``base/run-N`` for the first N not taken, so a second demo keeps the first's results."""
    n = 1
    while (base / f"run-{n}").exists():
        n += 1
    return base / f"run-{n}"
