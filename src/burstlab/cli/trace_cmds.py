"""``burstlab trace info|convert|schema``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from burstlab.cli.output import Force
from burstlab.cli.reading import TraceOptions, trace_options
from burstlab.cli.steps import Quiet, Stages

if TYPE_CHECKING:
    from burstlab.trace.info import TraceInfo
    from burstlab.trace.load_report import LoadReport

TraceArg = Annotated[
    str,
    typer.Argument(
        help="Trace file (CSV, CSV.gz, JSONL, Parquet) or 'sample' for the bundled trace."
    ),
]


@trace_options()
def info(
    trace: TraceArg,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    quiet: Quiet = False,
    reading: TraceOptions = TraceOptions(),
) -> None:
    """Rows, time span, mean and peak rates, model x log type breakdown, sessions, load report.

    Example: burstlab trace info sample
    """
    from burstlab.trace.info import trace_info

    with Stages([f"reading {trace}", "summarising"], quiet=quiet) as stage:
        stage()
        table, report = reading.load(trace)
        stage()
        result = trace_info(table, report)
    if json:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
    else:
        print_info(result)
    warn(report)


@trace_options("format", "map", "time_unit", "sort", "lenient", "drop_failed")
def convert(
    trace: TraceArg,
    output: Annotated[str, typer.Argument(help="Output path: .parquet, .csv or .jsonl.")],
    force: Force = False,
    quiet: Quiet = False,
    reading: TraceOptions = TraceOptions(),
) -> None:
    """Read any trace and write it as a canonical request table.

    Example: burstlab trace convert BurstGPT_1.csv burstgpt1.parquet
    """
    from burstlab.core.files import refuse_overwrite
    from burstlab.trace.io import table_suffix, write_table

    table_suffix(output)  # fail on a bad extension before reading a large file
    refuse_overwrite(output, force=force, option=None)
    with Stages([f"reading {trace}", f"writing {output}"], quiet=quiet) as stage:
        stage()
        table, report = reading.load(trace)
        stage()
        write_table(table, output)
    warn(report)
    typer.echo(
        f"wrote {table.height} rows to {output} "
        f"(read {report.rows_read}, dropped {sum(report.dropped.values())})"
    )


def schema() -> None:
    """Print the canonical request-table schema."""
    from burstlab.trace.schema import describe

    typer.echo(describe())


def warn(report: LoadReport) -> None:
    """Load-report warnings go to stderr so ``--json`` output stays clean."""
    for message in report.warnings:
        sys.stderr.write(f"warning: {message}\n")


def print_info(result: TraceInfo) -> None:
    """Render a :class:`TraceInfo` as rich tables."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 120)  # pipes and CI logs: do not squeeze the table
    load_report = result.load
    if load_report is not None:
        variant = f" {load_report.variant}" if load_report.variant else ""
        console.print(
            f"[bold]{escape(load_report.source)}[/]  "
            f"({load_report.format}{variant}, {load_report.kind}"
            f"{', gzip' if load_report.compressed else ''})"
        )
    top = Table(show_header=False, box=None, pad_edge=False)
    top.add_column(style="dim")
    top.add_column(justify="right")
    top.add_row("rows", f"{result.rows:,}")
    top.add_row("time span", _duration(result.span_s))
    if load_report is not None and load_report.origin:
        top.add_row("starts at", escape(load_report.origin))
    top.add_row("mean rate", f"{result.mean_rps:,.3f} req/s")
    top.add_row("peak rate (1 s bins)", f"{result.peak_rps_1s:,.0f} req/s")
    top.add_row("peak rate (1 min bins)", f"{result.peak_rps_1m:,.2f} req/s")
    top.add_row("failure rate", f"{result.failure_rate:.2%}")
    top.add_row(
        "tokens in / out", f"{result.input_tokens_total:,} / {result.output_tokens_total:,}"
    )
    top.add_row("sessions", f"{result.sessions:,}")
    if result.session_stats is not None:
        s = result.session_stats
        top.add_row(
            "turns per session",
            f"mean {s.turns_mean:.2f}, p50 {s.turns_p50}, "
            f"max {s.turns_max}, single-turn {s.single_turn_share:.1%}",
        )
    console.print(top)

    table = Table(title="by model x log type", title_justify="left")
    for name in (
        "model",
        "log type",
        "requests",
        "share",
        "failed",
        "input mean/p50/p99",
        "output mean/p50/p99",
    ):
        table.add_column(
            name, justify="left" if name in ("model", "log type") else "right", no_wrap=True
        )
    for c in result.breakdown:
        table.add_row(
            escape(c.model or "-"),
            escape(c.log_type or "-"),
            f"{c.count:,}",
            f"{c.share:.1%}",
            f"{c.failure_rate:.2%}",
            f"{c.input_mean:,.0f} / {c.input_p50:,} / {c.input_p99:,}",
            f"{c.output_mean:,.0f} / {c.output_p50:,} / {c.output_p99:,}",
        )
    console.print(table)
    if load_report is not None:
        dropped = ", ".join(f"{k} {v:,}" for k, v in sorted(load_report.dropped.items())) or "none"
        console.print(
            f"load: read {load_report.rows_read:,} rows, kept {load_report.rows_kept:,}, "
            f"dropped {dropped}; reordered {load_report.reordered:,}; "
            f"cache {load_report.cache}; {load_report.seconds:.2f} s"
        )


def _duration(seconds: float) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{int(hours):02d}:{int(minutes):02d}:{secs:06.3f}"
    return f"{int(days)} d {text}" if days else text
