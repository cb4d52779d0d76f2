"""``burstlab simulate WORKLOAD [--engine engine.yaml] -o RUN_DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from burstlab.cli.reading import FormatOpt, load


def simulate(
    workload: Annotated[
        str, typer.Argument(help="Workload or trace file (any format burstlab reads), or 'sample'.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory (must not hold a run).")],
    engine: Annotated[
        Path | None,
        typer.Option(
            "--engine", help="engine.yaml (default: one Llama-2-7B replica on an A100-80G)."
        ),
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option("--scheduler", help="fcfs, srf or lrf (overrides the file).")
    ] = None,
    num_blocks: Annotated[
        int | None, typer.Option("--num-blocks", help="KV blocks (overrides the derived count).")
    ] = None,
    slo: Annotated[
        str | None,
        typer.Option("--slo", help="Goodput SLOs in seconds: ttft=0.5,tpot=0.05,e2e=10."),
    ] = None,
    report: Annotated[
        bool, typer.Option("--report/--no-report", help="Also write report.html.")
    ] = True,
    format: FormatOpt = None,
) -> None:
    """Run a workload through a simulated serving engine (no GPU) and write the same
    run directory as 'bench': records.jsonl, summary.json, run.json, telemetry.parquet.

    Example: burstlab simulate w.parquet -o runs/sim
    """
    from rich.console import Console

    from burstlab.analyze.results import parse_slo
    from burstlab.cli.bench_cmd import print_summary
    from burstlab.sim.simulate import simulate as run_simulation
    from burstlab.sim.spec import load_spec

    console = Console(stderr=True)
    spec = load_spec(engine)
    overrides = {
        k: v for k, v in (("scheduler", scheduler), ("num_blocks", num_blocks)) if v is not None
    }
    if overrides:
        spec = spec.model_copy(update={"engine": {**spec.engine, **overrides}})
        spec.config()
    with console.status(f"reading {workload}"):
        table, _ = load(workload, format=format)
    with console.status(f"simulating {table.height:,} requests"):
        _, summary = run_simulation(
            table,
            spec.build(),
            out,
            description=spec.describe(),
            slo=parse_slo(slo) if slo else None,
        )
    print_summary(summary, Console())
    e = summary["engine"]
    typer.echo(
        f"simulated {table.height:,} requests in {e['wall_s']:.2f} s "
        f"({e['iterations']:,} iterations in {e['steps']:,} steps, {e['preemptions']} preemptions)"
    )
    if report:
        from burstlab.report.bench import render_run

        html = render_run(out)
        typer.echo(f"wrote {out / 'records.jsonl'}, {out / 'summary.json'} and {html}")
