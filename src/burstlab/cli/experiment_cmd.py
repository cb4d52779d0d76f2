"""``burstlab experiment scheduling|kv|pd|grid WORKLOAD... -o DIR [--grid F=V1,V2]
[--executor serial|process|ray] [--jobs N] [--address ADDR]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from burstlab.cli.choices import Study, SweepExecutor
from burstlab.cli.output import Force
from burstlab.cli.reading import TraceOptions, trace_options
from burstlab.cli.steps import Quiet


@trace_options("format")
def experiment(
    study: Annotated[
        Study,
        typer.Argument(
            help="scheduling (FCFS vs SRF vs LRF), kv (cache sweep), pd (prefill:decode "
            "ratios), or grid (only the --grid fields vary)."
        ),
    ],
    workloads: Annotated[
        list[str],
        typer.Argument(
            help="Workload or trace files (any format burstlab reads), or 'sample'; "
            "every variant runs on each.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Directory for the table, plot and runs.")
    ],
    engine: Annotated[
        Path | None,
        typer.Option("--engine", help="engine.yaml (default: Llama-2-7B on one A100-80G)."),
    ] = None,
    grid: Annotated[
        list[str] | None,
        typer.Option(
            "--grid",
            help="FIELD=V1,V2,...: also vary a dotted engine.yaml field "
            "(engine.max_num_seqs=64,128,256); repeat for a cross product.",
            show_default=False,
        ),
    ] = None,
    executor: Annotated[
        SweepExecutor | None,
        typer.Option(
            "--executor",
            help="serial, process (a local process pool) or ray (Ray tasks; the 'ray' extra); "
            "default: process with --jobs > 1, ray with --address, else serial.",
            show_default=False,
        ),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            help="Simulations at once: process-pool workers, or a local Ray's CPUs "
            "(default for either: every core).",
            show_default=False,
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="A running Ray cluster to use (auto, HOST:PORT or ray://HOST:10001) "
            "instead of starting a local one.",
            show_default=False,
        ),
    ] = None,
    runs: Annotated[
        bool,
        typer.Option(
            "--runs/--no-runs",
            help="Write each simulation's run directory under DIR/runs (report it with "
            "'burstlab report').",
        ),
    ] = True,
    force: Force = False,
    quiet: Quiet = False,
    reading: TraceOptions = TraceOptions(),
) -> None:
    """Run the BurstGPT paper's serving comparisons, or a grid over engine.yaml fields,
    on one or more workloads in the simulator; write experiment.csv, experiment.json,
    experiment.png and a run directory per simulation under DIR/runs.

    Examples: burstlab experiment scheduling w.parquet -o exp;
    burstlab experiment grid w1.parquet w2.parquet --grid engine.max_num_seqs=64,256
    --grid engine.num_blocks=1000,2000 --executor ray -o sweep
    """
    import os

    import polars as pl
    from rich.console import Console
    from rich.table import Table

    from burstlab.cli.engine_options import warn
    from burstlab.cli.steps import Stages, StepBar
    from burstlab.core.errors import InputError
    from burstlab.core.files import atomic_write, refuse_overwrite, write_json
    from burstlab.report.experiment import experiment_png
    from burstlab.sim.spec import load_spec
    from burstlab.sim.sweep import (
        ProcessPool,
        RayExecutor,
        clear_runs,
        parse_grid,
        plan_sweep,
        run_sweep,
    )
    from burstlab.sim.sweep import executor as make_executor

    console = Console(stderr=True)
    spec = load_spec(engine)
    warn(spec)
    axes = parse_grid(grid or [])
    if len(set(workloads)) < len(workloads):
        raise InputError("a workload is given twice; give each once")
    runs_dir = out / "runs"
    # an unknown study or a bad grid value fails before any workload is read
    tasks = plan_sweep(study, spec, workloads, axes, runs=runs_dir if runs else None)
    runner = make_executor(executor, jobs, address)
    written = ("experiment.csv", "experiment.json", "experiment.png")
    refuse_overwrite(*(out / name for name in written), force=force, folder=out)
    if runs and not force:
        clear_runs(runs_dir, force=False)
    tables = {}
    for workload in workloads:
        with Stages([f"reading {workload}"], console, quiet=quiet) as stage:
            stage()
            tables[workload] = reading.load(workload)[0]
    if runs:
        clear_runs(runs_dir, force=force)
    described: dict[str, object]
    if isinstance(runner, ProcessPool):
        where, described = f"on {runner.jobs} processes", {"kind": "process", "jobs": runner.jobs}
    elif isinstance(runner, RayExecutor):
        cpus = runner.num_cpus or os.cpu_count()
        cluster = runner.address or f"a local Ray with {cpus} CPUs"
        where = f"as Ray tasks on {cluster}"
        described = {"kind": "ray", "address": runner.address, "num_cpus": runner.num_cpus}
    else:
        where, described = "one at a time", {"kind": "serial"}
    console.print(f"{len(tasks)} simulations ({study}), {where}")
    with StepBar("simulating", "runs", console, quiet=quiet) as bar:
        bar.start(len(tasks))
        result = run_sweep(tasks, tables, runner, progress=bar)
    several = len(workloads) > 1
    atomic_write(out / "experiment.csv", result.write_csv().encode())
    write_json(
        out / "experiment.json",
        {
            "study": study,
            "workloads": workloads,
            "grid": {a.field: list(a.values) for a in axes},
            "executor": described,
            "rows": result.to_dicts(),
        },
    )
    figure = result
    if several:
        stems = [Path(w).stem for w in result["workload"].to_list()]
        labels = [f"{s}: {v}" for s, v in zip(stems, result["variant"].to_list(), strict=True)]
        figure = result.with_columns(variant=pl.Series(labels, dtype=pl.String))
    title = f"{study}: {workloads[0]}" if not several else f"{study}: {len(workloads)} workloads"
    atomic_write(out / "experiment.png", experiment_png(figure, title))
    view = Table(title=f"experiment {study}", header_style="bold")
    names = ["variant", *(["workload"] if several else [])]
    for name in (*names, "E2E mean s", "E2E p99 s", "TTFT mean s", "TTFT p99 s",
                 "jitter ms", "failed %", "preemptions"):  # fmt: skip
        if name in names:
            view.add_column(name, overflow="fold")
        else:
            view.add_column(name, justify="right", no_wrap=True)
    for row in result.iter_rows(named=True):
        view.add_row(
            *(str(row[n]) for n in names),
            f"{row['e2e_mean_s']:.2f}",
            f"{row['e2e_p99_s']:.2f}",
            f"{row['ttft_mean_s']:.2f}",
            f"{row['ttft_p99_s']:.2f}",
            f"{row['jitter_s'] * 1e3:.1f}",
            f"{row['failure_rate'] * 100:.1f}",
            f"{row['preemptions']:.0f}",
        )
    screen = Console()
    if not screen.is_terminal:  # a file or a pipe gets the whole table, however wide
        wide = screen.measure(view, options=screen.options.update_width(1000)).maximum
        screen = Console(width=max(screen.width, wide))
    screen.print(view)
    also = f" and {len(tasks)} run directories under {runs_dir}" if runs else ""
    typer.echo(
        f"wrote {out / 'experiment.csv'}, {out / 'experiment.json'}, {out / 'experiment.png'}{also}"
    )
