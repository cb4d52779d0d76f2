"""``report.html`` for ``burstlab analyze``: one page, no scripts, images inline.

The page has no JavaScript at all and a Content-Security-Policy that forbids
any; all text (file names, model names, notes) goes through Jinja2's
autoescaping.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from burstlab.report import analysis_figures
from burstlab.report.drawing import data_uri
from burstlab.report.page import write_page

if TYPE_CHECKING:
    import polars as pl

    from burstlab.analyze.summary import Comparison, Summary


def figures(table: pl.DataFrame, summary: Summary) -> list[tuple[str, str]]:
    """(caption, data URI) for every figure of one analysed table."""
    made = [
        ("Rate and burstiness over time", analysis_figures.rate_and_shape(summary)),
        (
            "Inter-arrival gaps against a Poisson process",
            analysis_figures.interarrival_cdf({summary.source: table}),
        ),
        (_gap_fit_caption(summary), analysis_figures.gap_fit(summary)),
        (_day_slots_caption(summary), analysis_figures.day_slots(summary)),
        ("Requests by hour of day and weekday", analysis_figures.profiles(summary)),
        (
            "Mean requests per hour by weekday and hour of day",
            analysis_figures.weekday_hour(summary),
        ),
        (
            "Weekly profile: requests per hour over the 168 hours of a week",
            analysis_figures.weekly(summary),
        ),
        (
            "Request rate within each hour of day across days (per-minute bins; box p25-p75, "
            "whiskers p5-p95, triangle mean)",
            analysis_figures.hourly_rate(summary),
        ),
        ("Request and response tokens per hour", analysis_figures.tokens_per_hour(summary)),
        (
            "Request lengths",
            analysis_figures.length_histograms(table, "input_tokens", "request tokens"),
        ),
        (
            "Response lengths",
            analysis_figures.length_histograms(table, "output_tokens", "response tokens"),
        ),
        (
            "Request vs response: median, mean and 90% band (p5-p95) of response tokens per "
            "request-length bin",
            analysis_figures.relation(summary),
        ),
        (
            "Conversations: turns per session, time between turns (arrival to arrival), and "
            "duration of multi-turn sessions",
            analysis_figures.conversation_shapes(summary),
        ),
        (
            "Elapsed time recorded by the source against response tokens, per model, with the "
            "least-squares line",
            analysis_figures.elapsed(table, summary),
        ),
        ("Failures over time", analysis_figures.failures_over_time(summary)),
    ]
    return [(caption, uri) for caption, png in made if (uri := data_uri(png)) is not None]


def _gap_fit_caption(summary: Summary) -> str:
    ticks = summary.gap_check.histogram.kind == "ticks"
    caption = (
        "Fitted Gamma and Weibull against the logged inter-arrival gaps, as the logger would "
        "record them"
        + (" (the censored probability of each whole number of ticks)" if ticks else "")
        + "; below: P-P plot of the empirical against each fitted CDF and their difference, "
        "KS distance in the legend"
    )
    note = summary.gap_check.note
    return f"{caption}. {note}." if note else caption


def _day_slots_caption(summary: Summary) -> str:
    table = summary.workday_slots
    caption = (
        f"Gamma α (shape) and β (scale) per 20-minute slot of the day, averaged over "
        f"{'work days (Mon-Fri)' if table.days == 'Mon-Fri' else 'all days'} (band: ±1 sd "
        "across days), and the mean rate"
    )
    return f"{caption}; {table.note}" if table.note else caption


def render(
    path: Path,
    parts: list[tuple[pl.DataFrame, Summary]],
    comparison: Comparison | None = None,
    *,
    with_plots: bool = True,
) -> Path:
    """Write the report for one table (or two, with their comparison) to ``path``."""
    sections = [{"summary": s, "figures": figures(t, s) if with_plots else []} for t, s in parts]
    overlay = None
    if comparison is not None and with_plots:
        overlay = data_uri(analysis_figures.interarrival_cdf({s.source: t for t, s in parts}))
    return write_page(
        path, "analysis.html.j2", sections=sections, comparison=comparison, overlay=overlay
    )
