"""``burstlab report RUN_DIR``: (re)write a bench run's ``report.html``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report(
    run_dir: Annotated[
        Path, typer.Argument(help="A run directory written by 'burstlab bench -o'.")
    ],
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Render figures.")] = True,
) -> None:
    """Write RUN_DIR/report.html: status, latency from sent and from intended, figures
    of latency over time, CDFs, failures and schedule lag, and example errors.

    Works on an interrupted or killed run too. Example: burstlab report runs/r1
    """
    from burstlab.report.bench import render_run

    html = render_run(run_dir, with_plots=plots)
    typer.echo(f"wrote {html}")
