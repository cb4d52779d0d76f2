"""Matplotlib figures for the analysis report, returned as PNG bytes.

Figures are built without pyplot, so matplotlib runs headless with no global
state. Each function takes plain analysis results and returns one PNG, so the
report can embed it as a ``data:`` URI. The small public helpers (:func:`grid`,
:func:`to_png`, :func:`data_uri`) serve every report's figures.
"""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from burstlab.analyze.summary import Summary

HOUR = 3600.0


def _figure(rows: int = 1, height: float = 3.2) -> tuple[Figure, np.ndarray]:
    """A figure outside pyplot: no global state, nothing to close, no display needed."""
    fig = Figure(figsize=(9, height * rows))
    axes = fig.subplots(rows, 1, squeeze=False)
    return fig, axes[:, 0]


def grid(
    rows: int = 1, cols: int = 1, *, height: float = 3.2, width: float = 9.0
) -> tuple[Figure, np.ndarray]:
    """A ``rows`` x ``cols`` figure outside pyplot; axes as a 2-D array.
    ``height`` is inches per row, ``width`` inches in all."""
    fig = Figure(figsize=(width, height * rows))
    return fig, fig.subplots(rows, cols, squeeze=False)


def to_png(fig: Figure) -> bytes:
    """``fig`` laid out tightly as PNG bytes (90 dpi: sharp enough, small inline)."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


_png = to_png


def data_uri(png: bytes | None) -> str | None:
    """PNG bytes as a ``data:`` URI to inline in a page (``None`` passes through)."""
    return None if png is None else "data:image/png;base64," + base64.b64encode(png).decode()


def _none_to_nan(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _steps(
    start_s: list[float], window_s: float, values: list[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Step-plot inputs in hours: window edges and values, the last one repeated."""
    edges = np.append(np.asarray(start_s), start_s[-1] + window_s) / HOUR
    vals = np.asarray(values, dtype=np.float64)
    return edges, np.append(vals, vals[-1])


def rate_and_shape(summary: Summary) -> bytes:
    """Requests/s and Gamma shape per window over time."""
    w = summary.burstiness.windows
    hours = np.asarray(w.start_s) / HOUR + w.window_s / 2 / HOUR  # shape at window centres
    fig, (top, bottom) = _figure(2)
    top.step(*_steps(w.start_s, w.window_s, w.rate_rps), where="post", color="tab:blue")
    top.axhline(summary.burstiness.mean_rps, color="grey", ls="--", lw=1, label="mean")
    top.set_ylabel("requests/s")
    top.set_title(f"rate per {w.window_s:g}-s window")
    top.legend(loc="upper right")
    bottom.plot(hours, _none_to_nan(w.shape), ".", color="tab:red")
    bottom.axhline(1.0, color="grey", ls="--", lw=1, label="Poisson (shape 1)")
    bottom.set_ylabel("Gamma shape")
    bottom.set_xlabel("hours from start")
    bottom.set_title("burstiness per window (lower is burstier)")
    bottom.legend(loc="upper right")
    return _png(fig)


def interarrival_cdf(tables: dict[str, pl.DataFrame]) -> bytes:
    """Empirical CDF of gaps (log scale) against an exponential of the same mean."""
    fig, (ax,) = _figure(1, 3.6)
    for name, table in tables.items():
        gaps = np.diff(table["arrival_s"].to_numpy())
        gaps = np.sort(gaps[gaps > 0])
        if gaps.size == 0:
            continue
        step = max(1, gaps.size // 2000)
        ax.plot(gaps[::step], (np.arange(gaps.size) / gaps.size)[::step], label=name)
        if len(tables) == 1:
            xs = np.geomspace(gaps[0], gaps[-1], 200)
            ax.plot(xs, 1 - np.exp(-xs / gaps.mean()), "--", color="grey", label="Poisson")
    ax.set_xscale("log")
    ax.set_xlabel("inter-arrival gap (s)")
    ax.set_ylabel("CDF")
    ax.set_title("inter-arrival gaps")
    ax.legend(loc="lower right")
    return _png(fig)


def profiles(summary: Summary) -> bytes | None:
    """Requests by hour of day and by weekday, when known."""
    p = summary.periodicity
    if p.hour_requests is None:
        return None
    rows = 2 if p.weekday_requests is not None else 1
    fig, axes = _figure(rows, 2.8)
    axes[0].bar(range(24), p.hour_requests, color="tab:blue")
    axes[0].set_xlabel("hour of day")
    axes[0].set_ylabel("requests")
    if p.weekday_requests is not None:
        axes[1].bar(["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], p.weekday_requests)
        axes[1].set_ylabel("requests")
    return _png(fig)


def length_histograms(table: pl.DataFrame, column: str, title: str) -> bytes:
    """Log-binned histogram of one length column per model x log type (log-log axes)."""
    fig, (ax,) = _figure(1, 3.4)
    top = max(int(table[column].to_numpy().max(initial=1)), 2)
    bins = np.unique(np.geomspace(1, top + 1, 50).astype(int))
    for (model, log_type), part in table.group_by("model", "log_type"):
        x = part.filter(pl.col(column) > 0)[column].to_numpy()
        if x.size:
            counts, _ = np.histogram(x, bins=bins)
            density = counts / np.diff(bins)  # per token, so uneven integer bins compare
            label = f"{model or '-'} / {log_type or '-'}"
            ax.step(bins, np.append(density, density[-1]), where="post", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tokens")
    ax.set_ylabel("requests per token")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    return _png(fig)


def relation(summary: Summary) -> bytes:
    """Median response length against request length, per class, with the fitted line."""
    fig, (ax,) = _figure(1, 3.4)
    for c in summary.lengths:
        if c.relation is None or not c.relation.bin_input:
            continue
        label = f"{c.model or '-'} / {c.log_type or '-'} (slope {c.relation.slope:.3f})"
        ax.plot(c.relation.bin_input, c.relation.bin_median_output, "o-", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("request tokens (bin centre)")
    ax.set_ylabel("median response tokens")
    ax.set_title("request vs response length")
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def failures_over_time(summary: Summary) -> bytes:
    """Failure rate per window over time, against the request rate."""
    w = summary.burstiness.windows
    fig, (ax,) = _figure(1, 3.0)
    failed = _none_to_nan(summary.failures.window_failure_rate)
    ax.step(*_steps(w.start_s, w.window_s, failed), where="post", color="tab:red")
    ax.set_ylabel("failure rate")
    ax.set_xlabel("hours from start")
    twin = ax.twinx()
    twin.step(*_steps(w.start_s, w.window_s, w.rate_rps), where="post", color="tab:blue", alpha=0.4)
    twin.set_ylabel("requests/s")
    ax.set_title("failures per window")
    return _png(fig)
