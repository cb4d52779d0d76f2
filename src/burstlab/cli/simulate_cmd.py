"""``burstlab simulate WORKLOAD [--engine engine.yaml] -o RUN_DIR``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from burstlab.cli.choices import Scheduler
from burstlab.cli.engine_options import KvUtilization, warn, with_overrides
from burstlab.cli.reading import TraceOptions, trace_options
from burstlab.cli.steps import Quiet, Stages, StepBar

if TYPE_CHECKING:
    import polars as pl
    from rich.console import Console

    from burstlab.results.slo import SLO
    from burstlab.sim.spec import EngineSpec


@trace_options("format")
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
        Scheduler | None, typer.Option("--scheduler", help="fcfs, srf or lrf (overrides the file).")
    ] = None,
    num_blocks: Annotated[
        int | None, typer.Option("--num-blocks", help="KV blocks (overrides the derived count).")
    ] = None,
    kv_utilization: KvUtilization = None,
    slo: Annotated[
        str | None,
        typer.Option("--slo", help="Goodput SLOs in seconds: ttft=0.5,tpot=0.05,e2e=10."),
    ] = None,
    autoscale: Annotated[
        Path | None,
        typer.Option(
            "--autoscale",
            help="plan.json from 'burstlab plan': replay the part of the workload the plan "
            "covers on a cluster that follows it, against a static peak-sized cluster and a "
            "reactive policy; writes autoscale.json.",
        ),
    ] = None,
    report: Annotated[
        bool, typer.Option("--report/--no-report", help="Also write report.html.")
    ] = True,
    token_times: Annotated[
        bool,
        typer.Option(
            "--token-times",
            help="Keep every token's time in requests.parquet (exact ITL; memory and disk "
            "grow with the tokens). Without it, each request keeps TPOT and its largest gap.",
        ),
    ] = False,
    quiet: Quiet = False,
    reading: TraceOptions = TraceOptions(),
) -> None:
    """Run a workload through a simulated serving engine (no GPU) and write a run
    directory 'report' and 'analyze' read: requests.parquet (one row per request),
    summary.json, run.json, telemetry.parquet.

    Examples: burstlab simulate w.parquet -o runs/sim;
    burstlab simulate trace.parquet --autoscale plan.json --slo ttft=2,e2e=60 -o runs/scaled
    """
    from rich.console import Console

    from burstlab.cli.bench_cmd import print_summary
    from burstlab.results.rundir import RunDir
    from burstlab.results.slo import parse_slo
    from burstlab.sim.engine import Engine
    from burstlab.sim.simulate import simulate as run_simulation
    from burstlab.sim.spec import load_spec

    console = Console(stderr=True)
    spec = with_overrides(
        load_spec(engine),
        scheduler=scheduler,
        num_blocks=num_blocks,
        kv_utilization=kv_utilization,
    )
    warn(spec)
    with Stages([f"reading {workload}"], console, quiet=quiet) as stage:
        stage()
        table, _ = reading.load(workload)
    objectives = parse_slo(slo) if slo else None
    if autoscale is not None:
        _autoscale(table, spec, autoscale, out, objectives, console, quiet=quiet)
        summary = RunDir(out).summary()
    else:
        built = spec.build()
        counted = isinstance(built, Engine)
        with _progress(console, table.height, counted=counted, quiet=quiet) as tick:
            summary = run_simulation(
                table,
                built,
                out,
                description=spec.describe(),
                slo=objectives,
                token_times=token_times,
                progress=tick,
            ).summary
    assert summary is not None
    assert summary.engine is not None
    print_summary(summary, Console())
    e = summary.engine
    typer.echo(
        f"simulated {summary.counts.scheduled:,} requests in {e.wall_s:.2f} s "
        f"({e.iterations:,} iterations in {e.steps:,} steps, {e.preemptions} preemptions)"
    )
    used = e.utilisation
    if used is not None:
        shares = [f"busy {used.busy_share:.0%}"]
        if used.mfu is not None and used.mbu is not None:
            shares += [f"MFU {used.mfu:.1%}", f"MBU {used.mbu:.1%}"]
        typer.echo(f"GPU utilisation (means over {used.window_s:,.0f} s): {', '.join(shares)}")
    if autoscale is None:
        kept = "kept" if summary.token_times else "not kept (--token-times keeps them)"
        typer.echo(f"token times: {kept}")
    if report:
        from burstlab.report.run import render_run

        html = render_run(out)
        typer.echo(f"wrote the run to {out} and its report to {html}")


@contextmanager
def _progress(
    console: Console, total: int, *, counted: bool, quiet: bool = False
) -> Iterator[Callable[[int], None] | None]:
    """A progress bar of requests ended out of ``total`` while the engine runs, then
    a spinner while the results are written; a spinner alone when the engine does not
    count (a cluster). Yields the engine's progress callback (None for a spinner)."""
    if not counted:
        text = f"simulating {total:,} requests (a cluster: no count)"
        with Stages([text], console, quiet=quiet) as stage:
            stage()
            yield None
        return
    bar = StepBar("simulating", "requests ended", console, finished="writing results", quiet=quiet)
    with bar:
        bar.start(total)
        yield lambda ended: bar(ended, total)


def _autoscale(
    table: pl.DataFrame,
    spec: EngineSpec,
    plan_path: Path,
    out: Path,
    slo: SLO | None,
    console: Console,
    *,
    quiet: bool = False,
) -> None:
    """Run the plan, static and reactive policies and print their comparison."""
    import polars as pl
    from rich.console import Console
    from rich.table import Table

    from burstlab.core.errors import InputError
    from burstlab.sim.autoscale import load_plan, run_autoscale

    if spec.pd is not None:
        raise InputError("--autoscale sizes colocated replicas; remove 'pd' from the engine file")
    plan = load_plan(plan_path)
    inside = table.filter(
        (pl.col("arrival_s") >= plan.start_s) & (pl.col("arrival_s") < plan.end_s)
    ).height
    console.print(
        f"the plan covers {plan.start_s:,.0f}-{plan.end_s:,.0f} s "
        f"({len(plan.instances)} intervals of {plan.interval_s:g} s): "
        f"{inside:,} of {table.height:,} requests"
    )
    text = f"simulating {inside:,} requests under the plan, static and reactive"
    with Stages([text], console, quiet=quiet) as stage:
        stage()
        comparison = run_autoscale(
            table,
            spec.engine_only(),
            plan,
            out,
            router=spec.cluster.router,
            description=spec.describe(),
            slo=slo,
        )
    grid = Table(title="autoscaling policies")
    for column in ("policy", "SLO met", "failed", "TTFT p99 s", "E2E p99 s", "inst-hours", "peak"):
        grid.add_column(column, justify="left" if column == "policy" else "right")
    for name, s in comparison["policies"].items():
        grid.add_row(
            name,
            f"{s['slo_attainment']:.1%}",
            f"{s['failure_rate']:.1%}",
            f"{s['ttft_p99_s']:.2f}",
            f"{s['e2e_p99_s']:.2f}",
            f"{s['instance_hours']:.2f}",
            f"{s['peak_instances']:.0f}",
        )
    Console().print(grid)
    if comparison["slo"] is None:
        console.print("no SLO given (--slo or the plan's): 'SLO met' counts completed requests")
