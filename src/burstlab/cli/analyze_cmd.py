"""``burstlab analyze TRACE [TRACE_B] -o DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from burstlab.cli.choices import LogType
from burstlab.cli.output import Force
from burstlab.cli.reading import TraceOptions, trace_options
from burstlab.cli.steps import Quiet


@trace_options()
def analyze(
    traces: Annotated[
        list[str],
        typer.Argument(
            help="One trace, or two to compare (files, 'sample', or run directories: "
            "their requests.parquet or records.jsonl)."
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Directory for summary.json and report.html.")
    ],
    model: Annotated[str | None, typer.Option("--model", help="Only this model.")] = None,
    log_type: Annotated[
        LogType | None, typer.Option("--log-type", help="Only 'conversation' or 'api'.")
    ] = None,
    start: Annotated[
        str | None,
        typer.Option("--start", help="Window start from the table's start: 90, 30m, 2h, 3d."),
    ] = None,
    end: Annotated[str | None, typer.Option("--end", help="Window end (same units).")] = None,
    window: Annotated[
        str, typer.Option("--window", help="Window for per-window Gamma fits and rates.")
    ] = "20m",
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Render figures.")] = True,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the Poisson reference.")] = 0,
    origin: Annotated[
        str | None,
        typer.Option(
            "--origin",
            help="Wall-clock time of arrival_s = 0 (the first request), ISO: "
            "2023-01-02T00:00:00. Gives hours and weekdays to a trace without dates "
            "(BurstGPT); a datetime trace (Azure) has its own.",
        ),
    ] = None,
    force: Force = False,
    quiet: Quiet = False,
    reading: TraceOptions = TraceOptions(),
) -> None:
    """Characterise a trace like the BurstGPT paper: burstiness, periodicity, lengths,
    conversations, failures; with two traces, compare them.

    Example: burstlab analyze sample -o out
    """
    import math

    from rich.console import Console

    from burstlab.analyze.calendar import parse_origin
    from burstlab.analyze.summary import Filters, analyze, compare
    from burstlab.cli.steps import Stages
    from burstlab.core.errors import InputError
    from burstlab.core.files import atomic_write, refuse_overwrite
    from burstlab.core.units import parse_duration
    from burstlab.report.analysis import render

    if len(traces) > 2:
        raise InputError(f"analyze takes one or two traces, got {len(traces)}")
    window_s = parse_duration(window, option="--window")
    when = parse_origin(origin) if origin is not None else None
    if window_s <= 0:
        raise InputError("--window must be positive")
    filters = Filters(
        model=model,
        log_type=log_type,
        start_s=parse_duration(start, option="--start") if start else None,
        end_s=parse_duration(end, option="--end") if end else None,
    )
    refuse_overwrite(out / "summary.json", out / "report.html", force=force, folder=out)
    planned = [f"{verb} {trace}" for trace in traces for verb in ("reading", "analysing")]
    planned += ["comparing"] * (len(traces) == 2) + ["writing the report"]
    # the display is gone before the result is printed: stdout carries the result alone
    with Stages(planned, Console(stderr=True), quiet=quiet) as stage:
        parts = []
        for trace in traces:
            stage()
            table, report = reading.load(_results_of_run(trace))
            stage()
            summary = analyze(
                table,
                report,
                filters=filters,
                window_s=window_s,
                seed=seed,
                origin=when,
                progress=stage.note,
            )
            parts.append((table, summary))
        if len(parts) == 2:
            stage()
        comparison = compare(parts[0], parts[1]) if len(parts) == 2 else None
        out.mkdir(parents=True, exist_ok=True)
        payload = parts[0][1] if comparison is None else None
        summary_path = out / "summary.json"
        if payload is not None:
            text = payload.model_dump_json(indent=2)
        else:
            import json

            text = json.dumps(
                {
                    "a": parts[0][1].model_dump(mode="json"),
                    "b": parts[1][1].model_dump(mode="json"),
                    "comparison": comparison.model_dump(mode="json") if comparison else None,
                },
                indent=2,
            )
        atomic_write(summary_path, text.encode())
        stage()
        html = render(out / "report.html", parts, comparison, with_plots=plots)
    b = parts[0][1].burstiness
    g = b.gaps.gamma
    fitted = (
        f"Gamma shape {g.shape:.3f} ({g.shape_ci[0]:.3f}-{g.shape_ci[1]:.3f}), scale "
        f"{g.scale:.3f} s"
        if g.identifiable
        else f"Gamma {g.note}"
    )
    idc60 = b.dispersion.idc["60s"]
    typer.echo(
        f"{parts[0][1].rows:,} requests, timestamps {b.gaps.resolution.label}: {fitted}, "
        f"CV {f'{b.cv:.2f}' if math.isfinite(b.cv) else '-'}, "
        f"IDC(60 s) {'-' if idc60 is None else f'{idc60:.2f}'}"
    )
    if comparison is not None:
        typer.echo(
            f"KS distances A vs B: inter-arrival {comparison.ks_interarrival:.3f}, request "
            f"{comparison.ks_input_tokens:.3f}, response {comparison.ks_output_tokens:.3f}"
        )
    typer.echo(f"wrote {summary_path} and {html}")


def _results_of_run(trace: str) -> str:
    """A run directory stands for its per-request results (a simulation's
    ``requests.parquet``, a benchmark's ``records.jsonl``); anything else is itself."""
    from burstlab.core.errors import InputError
    from burstlab.results.rundir import RunDir

    path = Path(trace)
    if not path.is_dir():
        return trace
    found = RunDir(path).results_file()
    if found is None:
        raise InputError(
            "is a directory without a run's results (requests.parquet or records.jsonl)",
            path=trace,
            hint="pass a trace file or a run directory written by simulate or bench",
        )
    return str(found)
