"""The figure of a simulator experiment: one panel per metric, one bar per variant."""

from __future__ import annotations

import numpy as np
import polars as pl

from burstlab.report.drawing import grid, to_png

#: (column, panel title, scale to display units, unit).
PANELS = (
    ("e2e_mean_s", "E2E, mean", 1.0, "s"),
    ("e2e_p99_s", "E2E, p99", 1.0, "s"),
    ("ttft_mean_s", "TTFT, mean", 1.0, "s"),
    ("ttft_p99_s", "TTFT, p99", 1.0, "s"),
    ("jitter_s", "jitter (std of TPOT)", 1e3, "ms"),
    ("failure_rate", "failure rate", 100.0, "%"),
)


def experiment_png(table: pl.DataFrame, title: str) -> bytes:
    """Bars of every metric in :data:`PANELS` for every variant of ``table``."""
    fig, axes = grid(2, 3, height=3.0, width=11.0)
    labels = table["variant"].to_list()
    x = np.arange(len(labels))
    for ax, (column, name, scale, unit) in zip(axes.flat, PANELS, strict=True):
        values = table[column].to_numpy() * scale
        ax.bar(x, np.nan_to_num(values), color="#4c72b0")
        ax.set_title(f"{name} ({unit})", fontsize=10)
        ax.set_xticks(x, labels, rotation=20, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        top = float(np.nanmax(values)) if np.isfinite(values).any() else 0.0
        ax.set_ylim(0, top * 1.1 if top > 0 else 1.0)
    fig.suptitle(title)
    return to_png(fig)
