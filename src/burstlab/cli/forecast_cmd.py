"""``burstlab forecast TRACE --granularity 10m --horizon 1 -o DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from burstlab.cli.output import Force
from burstlab.cli.reading import TraceOptions, trace_options
from burstlab.cli.steps import Quiet, Stages

if TYPE_CHECKING:
    from burstlab.forecast import ForecastResult


@trace_options("format", "map", "time_unit", "sort", "lenient", "cache")
def forecast(
    trace: Annotated[
        str, typer.Argument(help="Trace file (any format burstlab reads) or 'sample'.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write the forecast to.")],
    granularity: Annotated[
        str,
        typer.Option("--granularity", "-g", help="Primary interval (the one a plan follows)."),
    ] = "10m",
    granularities: Annotated[
        str,
        typer.Option("--granularities", help="Intervals of the table across granularities."),
    ] = "1m,5m,10m,30m,60m",
    horizon: Annotated[
        int, typer.Option("--horizon", help="Predict this many intervals ahead.")
    ] = 1,
    lags: Annotated[int, typer.Option("--lags", help="Past values used as features.")] = 3,
    window: Annotated[
        int, typer.Option("--window", help="Intervals of the rolling mean/std and moving average.")
    ] = 6,
    models: Annotated[
        str | None,
        typer.Option(
            "--models",
            help="Comma-separated subset of: xgboost, last, seasonal_day, seasonal_week, "
            "moving_average, linear (default: all).",
        ),
    ] = None,
    test_fraction: Annotated[
        float, typer.Option("--test-fraction", help="Share of the trace scored walk-forward.")
    ] = 0.25,
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Random seed (XGBoost, subsampling).")
    ] = 0,
    plots: Annotated[
        bool, typer.Option("--plots/--no-plots", help="Figures in report.html.")
    ] = True,
    force: Force = False,
    quiet: Quiet = False,
    reading: TraceOptions = TraceOptions(),
) -> None:
    """Forecast request counts and token lengths per interval with XGBoost and baselines,
    scored walk-forward (NMAE, NMSE) across granularities; writes predictions.parquet,
    metrics.json, forecast.json and report.html to DIR.

    Example: burstlab generate --synthetic --duration 30d -o trace.parquet;
    burstlab forecast trace.parquet --granularity 10m -o fc
    """
    from pydantic import ValidationError
    from rich.console import Console

    from burstlab.analyze.periodicity import clock_of
    from burstlab.core.errors import InputError, invalid
    from burstlab.core.files import refuse_overwrite
    from burstlab.core.units import parse_duration
    from burstlab.forecast import run_forecast, write_forecast
    from burstlab.forecast.run import ForecastSettings
    from burstlab.report.forecast import render_forecast

    console = Console(stderr=True)

    def seconds(text: str, option: str) -> int:
        value = parse_duration(text, option=option)
        if value < 1 or value != int(value):
            raise InputError(f"{option} {text!r} must be a whole number of seconds, at least 1")
        return int(value)

    primary = seconds(granularity, "--granularity")
    table_of = tuple(
        seconds(part, "--granularities") for part in granularities.split(",") if part.strip()
    )
    if not table_of:
        raise InputError(
            f"--granularities {granularities!r} names no interval", hint="e.g. 1m,10m,1h"
        )
    chosen = tuple(m.strip() for m in models.split(",") if m.strip()) if models else None
    try:  # the settings' bounds, named as options, before a large trace is read
        ForecastSettings(
            granularity_s=primary, granularities=(*table_of, primary), horizon=horizon,
            lags=lags, window=window, test_fraction=test_fraction, seed=seed,
        )  # fmt: skip
    except ValidationError as exc:
        raise invalid(exc, as_options=True) from None
    written = ("predictions.parquet", "metrics.json", "forecast.json", "report.html")
    refuse_overwrite(*(out / name for name in written), force=force, folder=out)
    planned = [f"reading {trace}", "forecasting", f"writing {out}"]
    with Stages(planned, console, quiet=quiet) as stage:
        stage()
        table, report = reading.load(trace)
        day_offset, weekday = clock_of(report)
        stage()
        result = run_forecast(
            table, granularity_s=primary, horizon=horizon, lags=lags, window=window,
            granularities=table_of, models=chosen, test_fraction=test_fraction, seed=seed,
            day_offset_s=day_offset, weekday0=0 if weekday is None else weekday,
            source=_source(trace), progress=stage.note,
        )  # fmt: skip
        stage()
        write_forecast(result, out)
        render_forecast(out, with_plots=plots)
    if weekday is None and result.span_s >= 7 * 86_400:
        console.print("the trace does not say its weekday: taken to start on a Monday")
    _print(result, out)


def _source(trace: str) -> str:
    """The trace as 'plan' can read it again: an existing file as an absolute path."""
    path = Path(trace)
    return str(path.resolve()) if path.is_file() else trace


def _print(result: ForecastResult, out: Path) -> None:
    """The NMAE table of requests across granularities, the best models, skips, notes."""
    from rich.console import Console
    from rich.table import Table

    from burstlab.forecast import MODELS

    console = Console()
    labels = list(result.metrics)
    table = Table(title="requests per interval: NMAE (walk-forward, test span)")
    table.add_column("model")
    for label in labels:
        table.add_column(label, justify="right")
    for model in MODELS:
        cells = []
        for label in labels:
            score = result.metrics[label].get("requests", {}).get(model)
            value = None if score is None else score["nmae"]
            cells.append("-" if value is None else f"{value:.3f}")
        if any(c != "-" for c in cells):
            table.add_row(model, *cells)
    console.print(table)
    here = result.metrics.get(result.primary, {})
    best = ", ".join(
        f"{name} {model} ({here[name][model]['nmae']:.3f})" for name, model in result.best.items()
    )
    console.print(f"best at {result.primary} (NMAE): {best}")
    for skip in result.skipped:
        where = " ".join(x for x in (skip.granularity, skip.series, skip.model) if x)
        console.print(f"not evaluated: {where}: {skip.reason}", style="yellow", highlight=False)
    for note in result.notes:
        console.print(f"note: {note}", style="yellow", highlight=False)
    typer.echo(f"wrote {out}/predictions.parquet, metrics.json, forecast.json and report.html")
