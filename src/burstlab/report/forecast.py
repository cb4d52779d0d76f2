"""``DIR/report.html`` for ``burstlab forecast``: scores across granularities and
forecast-vs-actual plots, read back from the files :func:`write_forecast` wrote
(so a saved forecast directory can be re-rendered).

Figures: NMAE against granularity for every series and model (the BurstGPT
paper's observation that coarser intervals forecast better), and per series the
actual values over the test span at the primary granularity beside the best
model and XGBoost, with a zoom on the last two days (the last-value baseline is
left out: it is the actual curve shifted by one interval and hides it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from burstlab.forecast.models import MODELS
from burstlab.forecast.run import read_json
from burstlab.forecast.series import DAY_S, SERIES
from burstlab.report.drawing import data_uri, grid, to_png
from burstlab.report.page import write_page

#: Series names as a reader reads them, with their units.
TITLES = {
    "requests": "requests per interval",
    "input_mean": "mean request tokens",
    "output_mean": "mean response tokens",
    "tokens": "tokens per interval (in + out)",
}
COLORS = {
    "xgboost": "tab:red",
    "last": "tab:green",
    "seasonal_day": "tab:purple",
    "seasonal_week": "tab:brown",
    "moving_average": "tab:orange",
    "linear": "tab:blue",
}
#: The zoomed panel shows this much of the end of the test span.
ZOOM_S = 2 * DAY_S


def render_forecast(out_dir: str | Path, *, with_plots: bool = True) -> Path:
    """Write ``out_dir/report.html`` from the forecast files in ``out_dir``; its path."""
    out = Path(out_dir)
    meta = read_json(out / "forecast.json")
    metrics = read_json(out / "metrics.json")
    predictions = pl.read_parquet(out / "predictions.parquet")
    scores: dict[str, Any] = metrics.get("granularities", {})
    labels = sorted(scores, key=lambda lab: metrics.get("granularity_s", {}).get(lab, 0))
    series = [s for s in SERIES if any(s in scores[lab] for lab in labels)]
    primary = str(meta.get("primary"))
    tables = [
        {
            "series": name,
            "title": TITLES[name],
            "rows": _rows(scores, labels, name),
        }
        for name in series
    ]
    figures: list[tuple[str, str]] = []
    if with_plots:
        if len(labels) > 1:
            png = granularity_png(scores, labels, series)
            figures.append(("NMAE against granularity (lower is better)", _uri(png)))
        g = int(meta.get("primary_granularity_s", 0))
        for name in series:
            best = meta.get("best", {}).get(name, {}).get("model")
            drawn = series_png(predictions, g, name, best)
            if drawn is not None:
                caption = f"{TITLES[name]} at {primary}: actual and forecasts"
                figures.append((caption, _uri(drawn)))
    settings = meta.get("settings", {})
    return write_page(
        out / "report.html",
        "forecast.html.j2",
        meta=meta,
        metrics=metrics,
        settings=settings,
        primary=primary,
        labels=labels,
        tables=tables,
        figures=figures,
        days=DAY_S,
    )


def _uri(png: bytes) -> str:
    uri = data_uri(png)
    assert uri is not None
    return uri


def _rows(scores: dict[str, Any], labels: list[str], name: str) -> list[dict[str, Any]]:
    """One row per model: NMAE and NMSE at every granularity, the best per column marked."""
    best: dict[str, float] = {}
    for lab in labels:
        values = [v["nmae"] for v in scores[lab].get(name, {}).values() if v["nmae"] is not None]
        if values:
            best[lab] = min(values)
    rows = []
    for model in MODELS:
        cells: list[dict[str, Any] | None] = []
        for lab in labels:
            v = scores[lab].get(name, {}).get(model)
            if v is None:
                cells.append(None)
                continue
            cells.append({"nmae": v["nmae"], "nmse": v["nmse"], "best": v["nmae"] == best.get(lab)})
        if any(c is not None for c in cells):
            rows.append({"model": model, "cells": cells})
    return rows


def granularity_png(scores: dict[str, Any], labels: list[str], series: list[str]) -> bytes:
    """NMAE against granularity, one panel per series, one line per model."""
    cols = 2 if len(series) > 1 else 1
    rows = -(-len(series) // cols)
    fig, axes = grid(rows, cols, height=2.8, width=10.0)
    x = np.arange(len(labels))
    for ax, name in zip(axes.flat, series, strict=False):
        for model in MODELS:
            ys = [scores[lab].get(name, {}).get(model, {}).get("nmae") for lab in labels]
            y = np.array([np.nan if v is None else v for v in ys], dtype=np.float64)
            if np.isfinite(y).any():
                ax.plot(x, y, "o-", ms=3, color=COLORS[model], label=model)
        ax.set_xticks(x, labels)
        ax.set_title(TITLES[name], fontsize=10)
        ax.set_ylabel("NMAE")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(series) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7, ncol=2)
    return to_png(fig)


def series_png(
    predictions: pl.DataFrame, granularity_s: int, name: str, best: str | None
) -> bytes | None:
    """Actual vs forecasts of one series over the test span (top) and its last two days
    (bottom); None when the series was not predicted at this granularity."""
    here = predictions.filter(
        (pl.col("granularity_s") == granularity_s), (pl.col("series") == name)
    ).sort("start_s")
    if here.height == 0:
        return None
    shown = [m for m in (best, "xgboost") if m is not None]
    shown = [m for i, m in enumerate(shown) if m not in shown[:i]]
    fig, axes = grid(2, 1, height=2.6, width=10.0)
    end = float(here["start_s"].max())  # type: ignore[arg-type]
    for ax, since in ((axes[0, 0], -np.inf), (axes[1, 0], end - ZOOM_S)):
        first = True
        for model in shown:
            part = here.filter(pl.col("model") == model, pl.col("start_s") >= since)
            if part.height == 0:
                continue
            days = part["start_s"].to_numpy() / DAY_S
            if first:
                ax.plot(days, part["actual"], color="black", lw=0.7, label="actual")
                first = False
            label = f"{model} (best)" if model == best else model
            ax.plot(days, part["predicted"], color=COLORS[model], lw=1.1, label=label)
        ax.set_ylabel(TITLES[name], fontsize=8)
        ax.grid(alpha=0.3)
    axes[0, 0].set_title("test span", fontsize=10)
    axes[1, 0].set_title("its last two days", fontsize=10)
    axes[1, 0].set_xlabel("days from the trace start")
    axes[0, 0].legend(fontsize=7, ncol=4, loc="upper left")
    return to_png(fig)
