"""``report.html`` of a run directory (``burstlab bench``, ``simulate`` or
``simulate --autoscale``): one page a serving engineer reads after a run, with no
scripts and every image inline.

The run is read by :mod:`~burstlab.report.run_loader`, laid out by
:mod:`~burstlab.report.run_page` and drawn by :mod:`~burstlab.report.run_figures`
and :mod:`~burstlab.report.sim_figures`. Everything that came from the server or
the workload (model names, error texts, URLs) is untrusted: it reaches the page
only through Jinja2's autoescaping, and the page forbids scripts with its
Content-Security-Policy.
"""

from __future__ import annotations

from pathlib import Path

from burstlab.report import drawing, run_figures, server_figures, sim_figures
from burstlab.report.page import write_page
from burstlab.report.run_loader import Run, figure_sample, load_run
from burstlab.report.run_page import page
from burstlab.report.time_axis import window_for
from burstlab.results.rundir import REPORT


def render_run(run_dir: str | Path, *, with_plots: bool = True) -> Path:
    """Write ``run_dir/report.html`` for a run and return its path.

    Raises :class:`~burstlab.core.errors.InputError` naming the directory when it
    is missing or holds no run (no records and no summary).
    """
    run = load_run(run_dir, telemetry=with_plots)
    context = page(run)
    context["figures"] = figures(run) if with_plots else []
    context["plots"] = with_plots
    return write_page(run.path / REPORT, "run.html.j2", **context)


def figures(run: Run) -> list[tuple[str, str]]:
    """(caption, data URI) for every figure the run's records support."""
    table = run.records
    if table is None or table.height == 0:
        return []
    window = window_for(table)
    made = run_figures.figures(
        table, run.summary.slo, window, figure_sample(table), client=run.kind != "simulate"
    )
    made += sim_figures.figures(run, window)
    made += server_figures.figures(run)
    made += run_figures.utilisation_figures(run.utilisation)
    return [(caption, uri) for caption, png in made if (uri := drawing.data_uri(png)) is not None]
