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


#: Above this many variants the bars lie down, one row per variant, so that long
#: labels (a sweep's grid point and workload) stay readable.
UPRIGHT_MAX = 6


def experiment_png(table: pl.DataFrame, title: str) -> bytes:
    """Bars of every metric in :data:`PANELS` for every variant of ``table``."""
    labels = table["variant"].to_list()
    x = np.arange(len(labels))
    upright = len(labels) <= UPRIGHT_MAX
    if upright:
        fig, axes = grid(2, 3, height=3.0, width=11.0)
    else:
        longest = max(len(str(label)) for label in labels)
        fig, axes = grid(2, 3, height=1.0 + 0.2 * len(labels), width=9.0 + 0.07 * longest)
    for i, (ax, (column, name, scale, unit)) in enumerate(zip(axes.flat, PANELS, strict=True)):
        values = table[column].to_numpy() * scale
        top = float(np.nanmax(values)) if np.isfinite(values).any() else 0.0
        if upright:
            ax.bar(x, np.nan_to_num(values), color="#4c72b0")
            ax.set_xticks(x, labels, rotation=20, ha="right", fontsize=8)
            ax.grid(axis="y", alpha=0.3)
            ax.set_ylim(0, top * 1.1 if top > 0 else 1.0)
        else:
            ax.barh(x, np.nan_to_num(values), color="#4c72b0")
            ax.set_yticks(x, labels if i % 3 == 0 else [], fontsize=8)
            ax.invert_yaxis()
            ax.grid(axis="x", alpha=0.3)
            ax.set_xlim(0, top * 1.1 if top > 0 else 1.0)
        ax.set_title(f"{name} ({unit})", fontsize=10)
    fig.suptitle(title)
    return to_png(fig)
