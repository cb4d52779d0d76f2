"""``burstlab report DIR``: (re)write the ``report.html`` of a run or a forecast directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from burstlab.cli.steps import Quiet, Stages


def report(
    run_dir: Annotated[
        Path,
        typer.Argument(
            help="A run directory ('bench', 'simulate') or a forecast directory ('forecast')."
        ),
    ],
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Render figures.")] = True,
    quiet: Quiet = False,
) -> None:
    """Write RUN_DIR/report.html: status, latency from sent and from intended, figures
    of latency over time, CDFs, failures and schedule lag, and example errors.

    Works on an interrupted or killed run too, and on a forecast directory (its
    tables and forecast-vs-actual figures). Example: burstlab report runs/r1
    """
    from burstlab.report.forecast import render_forecast
    from burstlab.report.run import render_run

    with Stages([f"writing {run_dir / 'report.html'}"], quiet=quiet) as stage:
        stage()
        if (run_dir / "forecast.json").is_file():
            html = render_forecast(run_dir, with_plots=plots)
        else:
            html = render_run(run_dir, with_plots=plots)
    typer.echo(f"wrote {html}")
