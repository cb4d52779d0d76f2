"""``report.html`` for ``burstlab analyze``: one page, no scripts, images inline.

The page has no JavaScript at all and a Content-Security-Policy that forbids
any; all text (file names, model names, notes) goes through Jinja2's
autoescaping.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING

from jinja2 import Environment, PackageLoader, select_autoescape

from burstlab.report import plots

if TYPE_CHECKING:
    import polars as pl

    from burstlab.analyze.summary import Comparison, Summary


def _data_uri(png: bytes | None) -> str | None:
    return None if png is None else "data:image/png;base64," + base64.b64encode(png).decode()


def figures(table: pl.DataFrame, summary: Summary) -> list[tuple[str, str]]:
    """(caption, data URI) for every figure of one analysed table."""
    made = [
        ("Rate and burstiness over time", plots.rate_and_shape(summary)),
        (
            "Inter-arrival gaps against a Poisson process",
            plots.interarrival_cdf({summary.source: table}),
        ),
        ("Requests by hour of day and weekday", plots.profiles(summary)),
        ("Request lengths", plots.length_histograms(table, "input_tokens", "request tokens")),
        ("Response lengths", plots.length_histograms(table, "output_tokens", "response tokens")),
        ("Request vs response", plots.relation(summary)),
        ("Failures over time", plots.failures_over_time(summary)),
    ]
    return [(caption, uri) for caption, png in made if (uri := _data_uri(png)) is not None]


def render(
    path: Path,
    parts: list[tuple[pl.DataFrame, Summary]],
    comparison: Comparison | None = None,
    *,
    with_plots: bool = True,
) -> Path:
    """Write the report for one table (or two, with their comparison) to ``path``."""
    env = Environment(
        loader=PackageLoader("burstlab.report", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    sections = [{"summary": s, "figures": figures(t, s) if with_plots else []} for t, s in parts]
    overlay = None
    if comparison is not None and with_plots:
        overlay = _data_uri(plots.interarrival_cdf({s.source: t for t, s in parts}))
    html = env.get_template("analysis.html.j2").render(
        sections=sections, comparison=comparison, overlay=overlay
    )
    tmp = path.with_suffix(".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path
