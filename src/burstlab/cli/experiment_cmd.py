"""``burstlab experiment scheduling|kv WORKLOAD -o DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from burstlab.cli.output import Force
from burstlab.cli.reading import TraceOptions, trace_options


@trace_options("format")
def experiment(
    study: Annotated[
        str, typer.Argument(help="scheduling (FCFS vs SRF vs LRF) or kv (cache sweep).")
    ],
    workload: Annotated[
        str, typer.Argument(help="Workload or trace file (any format burstlab reads), or 'sample'.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the table and plot.")],
    engine: Annotated[
        Path | None,
        typer.Option("--engine", help="engine.yaml (default: Llama-2-7B on one A100-80G)."),
    ] = None,
    force: Force = False,
    reading: TraceOptions = TraceOptions(),
) -> None:
    """Run the BurstGPT paper's serving comparisons on one workload in the simulator;
    write experiment.csv, experiment.json and experiment.png.

    Example: burstlab experiment scheduling w.parquet -o exp
    """
    from rich.console import Console
    from rich.table import Table

    from burstlab.core.files import atomic_write, refuse_overwrite, write_json
    from burstlab.report.experiment import experiment_png
    from burstlab.sim.experiment import run_study, variants
    from burstlab.sim.spec import load_spec

    console = Console(stderr=True)
    spec = load_spec(engine)
    variants(study, spec)  # an unknown study fails before the workload is read
    written = ("experiment.csv", "experiment.json", "experiment.png")
    refuse_overwrite(*(out / name for name in written), force=force, folder=out)
    with console.status(f"reading {workload}"):
        table, _ = reading.load(workload)
    with console.status(f"simulating {table.height:,} requests per variant"):
        result = run_study(study, table, spec)
    atomic_write(out / "experiment.csv", result.write_csv().encode())
    write_json(out / "experiment.json", {"study": study, "rows": result.to_dicts()})
    atomic_write(out / "experiment.png", experiment_png(result, f"{study}: {workload}"))
    view = Table(title=f"experiment {study}", header_style="bold")
    for name in ("variant", "E2E mean s", "E2E p99 s", "TTFT mean s", "TTFT p99 s",
                 "jitter ms", "failed %", "preemptions"):  # fmt: skip
        view.add_column(name, justify="left" if name == "variant" else "right", no_wrap=True)
    for row in result.iter_rows(named=True):
        view.add_row(
            row["variant"],
            f"{row['e2e_mean_s']:.2f}",
            f"{row['e2e_p99_s']:.2f}",
            f"{row['ttft_mean_s']:.2f}",
            f"{row['ttft_p99_s']:.2f}",
            f"{row['jitter_s'] * 1e3:.1f}",
            f"{row['failure_rate'] * 100:.1f}",
            f"{row['preemptions']:.0f}",
        )
    Console().print(view)
    typer.echo(
        f"wrote {out / 'experiment.csv'}, {out / 'experiment.json'} and {out / 'experiment.png'}"
    )
