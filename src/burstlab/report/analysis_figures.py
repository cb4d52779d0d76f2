"""Matplotlib figures of the analysis report (one analysed table, or two compared), as PNG bytes.

Figures are built without pyplot, so matplotlib runs headless with no global
state. Each function takes plain analysis results and returns one PNG, so the
report can embed it as a ``data:`` URI (:mod:`burstlab.report.drawing`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from matplotlib.figure import Figure

from burstlab.report.drawing import grid, to_png

if TYPE_CHECKING:
    from burstlab.analyze.summary import Summary

HOUR = 3600.0


def _figure(rows: int = 1, height: float = 3.2) -> tuple[Figure, np.ndarray]:
    """A figure outside pyplot: no global state, nothing to close, no display needed."""
    fig = Figure(figsize=(9, height * rows))
    axes = fig.subplots(rows, 1, squeeze=False)
    return fig, axes[:, 0]


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
    return to_png(fig)


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
    return to_png(fig)


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
    return to_png(fig)


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
    return to_png(fig)


def relation(summary: Summary, *, max_classes: int = 6, min_bin: int = 10) -> bytes | None:
    """Response length against request length, one panel per class: median, mean and the
    90% band (p5-p95) of responses in each request-length bin of at least ``min_bin``
    requests."""
    shown = [
        c
        for c in summary.lengths
        if c.relation is not None and max(c.relation.bin_count, default=0) >= min_bin
    ][:max_classes]
    if not shown:
        return None
    cols = 1 if len(shown) == 1 else 2
    rows = -(-len(shown) // cols)
    fig, axes = grid(rows, cols, height=3.2, width=9.0)
    for ax in axes.ravel()[len(shown) :]:
        ax.set_visible(False)
    for ax, c in zip(axes.ravel(), shown, strict=False):
        r = c.relation
        assert r is not None
        keep = np.asarray(r.bin_count) >= min_bin
        x = np.asarray(r.bin_input)[keep]
        ax.fill_between(
            x,
            np.asarray(r.bin_p5_output)[keep],
            np.asarray(r.bin_p95_output)[keep],
            color="tab:blue",
            alpha=0.2,
            label="p5-p95",
        )
        ax.plot(
            x, np.asarray(r.bin_median_output)[keep], "o-", color="tab:blue", ms=3, label="median"
        )
        ax.plot(x, np.asarray(r.bin_mean_output)[keep], "--", color="tab:red", lw=1, label="mean")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("request tokens (bin centre)")
        ax.set_ylabel("response tokens")
        ax.set_title(
            f"{c.model or '-'} / {c.log_type or '-'}: slope {r.slope:.3f}, R² {r.r_squared:.2f}",
            fontsize=10,
        )
        ax.legend(loc="upper left", fontsize=7)
    return to_png(fig)


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
    return to_png(fig)


WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def weekday_hour(summary: Summary) -> bytes | None:
    """Heatmap of mean requests per hour in each weekday x hour-of-day cell."""
    cells = summary.calendar.weekday_hour
    if cells is None:
        return None
    grid_ = _none_to_nan([v for row in cells.requests_per_hour for v in row]).reshape(7, 24)
    fig, ((ax,),) = grid(1, 1, height=3.2)
    image = ax.imshow(grid_, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_yticks(range(7), WEEKDAYS)
    ax.set_xticks(range(0, 24, 2))
    ax.set_xlabel("hour of day")
    ax.set_title("mean requests per hour, weekday x hour of day")
    fig.colorbar(image, ax=ax, label="requests / hour")
    return to_png(fig)


def weekly(summary: Summary) -> bytes | None:
    """Requests per hour over the 168 hours of a week: mean, and the lowest to highest
    fully observed hour."""
    week = summary.calendar.weekly
    if week is None:
        return None
    hours = np.arange(168)
    fig, (ax,) = _figure(1, 3.0)
    ax.fill_between(
        hours,
        _none_to_nan(week.low),
        _none_to_nan(week.high),
        step="mid",
        color="tab:blue",
        alpha=0.2,
        label="lowest to highest week",
    )
    ax.step(hours, _none_to_nan(week.mean), where="mid", color="tab:blue", label="mean")
    ax.set_xticks(np.arange(0, 168, 24) + 12, WEEKDAYS)
    for day in range(1, 7):
        ax.axvline(day * 24 - 0.5, color="grey", lw=0.5)
    ax.set_xlim(-0.5, 167.5)
    ax.set_ylabel("requests / hour")
    ax.set_title(f"weekly profile over {week.weeks:.1f} weeks (Monday 00:00 first)")
    ax.legend(loc="upper right", fontsize=8)
    return to_png(fig)


def hourly_rate(summary: Summary) -> bytes | None:
    """Per hour of day, a box of the per-bin request rate across days (whiskers p5-p95)."""
    rate = summary.calendar.hourly_rate
    if rate is None:
        return None
    stats = [
        {
            "med": q.p50,
            "q1": q.p25,
            "q3": q.p75,
            "whislo": q.p5,
            "whishi": q.p95,
            "mean": q.mean,
            "label": str(h),
        }
        for h, q in enumerate(rate.hours)
        if q is not None
    ]
    if not stats:
        return None
    fig, (ax,) = _figure(1, 3.2)
    ax.bxp(stats, showfliers=False, showmeans=True, meanprops={"markersize": 4})
    ax.set_xlabel("hour of day")
    ax.set_ylabel("requests/s")
    ax.set_title(f"request rate in {rate.bin_s:g}-s bins within each hour of day, across days")
    return to_png(fig)


def tokens_per_hour(summary: Summary) -> bytes:
    """Request and response tokens per hour: by hour of day, and over the trace."""
    t = summary.calendar.tokens_per_hour
    fig, (top, bottom) = _figure(2, 3.0)
    hours = np.arange(24)
    top.bar(hours - 0.2, _none_to_nan(t.hour_input), 0.4, label="request tokens")
    top.bar(hours + 0.2, _none_to_nan(t.hour_output), 0.4, label="response tokens")
    top.set_xticks(range(0, 24, 2))
    top.set_xlim(-0.6, 23.6)
    top.set_xlabel("hour of day")
    top.set_ylabel("tokens / hour")
    top.set_title("mean tokens per hour by hour of day")
    top.legend(loc="upper left", fontsize=8)
    long = len(t.series_input) * t.series_bin_s > 3 * 24 * HOUR
    unit = 24 * HOUR if long else HOUR
    start = (t.series_start_s + np.arange(len(t.series_input)) * t.series_bin_s) / unit
    per_hour = HOUR / t.series_bin_s
    for values, label in ((t.series_input, "request tokens"), (t.series_output, "response tokens")):
        y = np.asarray(values, dtype=np.float64) * per_hour
        bottom.step(
            np.append(start, start[-1] + t.series_bin_s / unit),
            np.append(y, y[-1]),
            where="post",
            label=label,
            lw=0.8,
        )
    bottom.set_xlabel("days from start" if long else "hours from start")
    bottom.set_ylabel("tokens / hour")
    width = (
        f"{t.series_bin_s / HOUR:g}-h" if t.series_bin_s >= HOUR else f"{t.series_bin_s / 60:g}-min"
    )
    bottom.set_title(f"tokens per hour over the trace ({width} bins)")
    bottom.legend(loc="upper left", fontsize=8)
    return to_png(fig)


def conversation_shapes(summary: Summary) -> bytes | None:
    """Turns per session, time between turns, and duration of multi-turn sessions."""
    c = summary.conversations
    if c is None:
        return None
    fig, axes = grid(1, 3, height=3.2, width=11.0)
    turns, gaps, durations = axes[0]
    h = c.turns_histogram
    labels = [*h.turns, h.turns[-1] + 1] if h.more else h.turns
    counts = [*h.sessions, h.more] if h.more else h.sessions
    turns.bar(labels, counts, color="tab:blue")
    if h.more:
        turns.annotate(f"> {h.turns[-1]}", (labels[-1], counts[-1]), ha="center", va="bottom")
    turns.set_yscale("log")
    turns.set_xlabel("turns in the session")
    turns.set_ylabel("sessions")
    turns.set_title("turns per session")
    for ax, hist, title in (
        (gaps, c.gap_between_turns_histogram, "time between turns (arrivals)"),
        (durations, c.duration_multi_turn_histogram, "duration, multi-turn sessions"),
    ):
        ax.set_title(title)
        ax.set_xscale("log")
        ax.set_xlabel("seconds")
        if hist is None:
            ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
            continue
        ax.stairs(hist.counts, hist.edges, fill=True, alpha=0.6)
        ax.set_ylabel("count")
        if hist.zeros:
            ax.text(
                0.98,
                0.95,
                f"{hist.zeros} at 0 s",
                ha="right",
                va="top",
                transform=ax.transAxes,
                fontsize=8,
            )
    return to_png(fig)


def elapsed(table: pl.DataFrame, summary: Summary, *, max_models: int = 4) -> bytes | None:
    """Per model: a 2-D histogram of the source's elapsed time against response tokens,
    with the least-squares line (output tokens only)."""
    e = summary.elapsed
    if e is None or not e.models:
        return None
    shown = e.models[:max_models]
    fig, axes = grid(1, len(shown), height=3.4, width=4.5 * len(shown))
    for ax, m in zip(axes[0], shown, strict=True):
        part = table.filter(
            pl.col("model").cast(pl.String).eq_missing(m.model)
            & ~pl.col("failed")
            & (pl.col("output_tokens") > 0)
            & pl.col("elapsed_s").is_not_null()
        )
        x = part["output_tokens"].to_numpy().astype(np.float64)
        y = part["elapsed_s"].to_numpy()
        top_x, top_y = np.quantile(x, 0.995), np.quantile(y, 0.995)
        counts, xe, ye = np.histogram2d(
            x, y, bins=60, range=[[0, max(top_x, 1.0)], [0, max(top_y, 1.0)]]
        )
        image = ax.pcolormesh(
            xe, ye, np.where(counts > 0, counts, np.nan).T, cmap="viridis", norm="log"
        )
        fig.colorbar(image, ax=ax, label="requests")
        if m.output_only is not None:
            line = m.output_only
            xs = np.array([0.0, xe[-1]])
            ax.plot(
                xs,
                line.intercept_s + line.per_output_token_s * xs,
                color="tab:red",
                label=f"{line.intercept_s:.2f} s + {1000 * line.per_output_token_s:.1f} ms/token"
                f" (R² {line.r_squared:.2f})",
            )
            ax.legend(loc="upper left", fontsize=8)
        ax.set_xlabel("response tokens")
        ax.set_ylabel("elapsed (s), as the source measured")
        ax.set_title(f"{m.model or '-'}: {m.requests:,} requests (to p99.5)")
    return to_png(fig)


_FAMILY_STYLE = {"gamma": ("tab:red", "o-", "Gamma"), "weibull": ("tab:green", "s--", "Weibull")}


def gap_fit(summary: Summary) -> bytes:
    """Top: the logged gaps' histogram with both fits as the logger would record them (one
    bar per whole tick on a grid, else log-binned densities). Bottom: P-P plot of the
    empirical against each fitted CDF at the bins' upper edges, with the KS distance, and
    the same differences drawn out (empirical minus fitted)."""
    check = summary.gap_check
    h = check.histogram
    fig = Figure(figsize=(9, 6.6))
    axes = fig.subplot_mosaic([["hist", "hist"], ["pp", "diff"]], height_ratios=[1.1, 1.0])
    left = axes["hist"]
    lo, hi = np.asarray(h.lo_s), np.asarray(h.hi_s)
    empirical = np.asarray(h.empirical)
    fitted = {"gamma": h.gamma, "weibull": h.weibull}
    if h.kind == "ticks":
        k = np.rint(lo / (h.tick_s or 1.0))
        left.bar(k, empirical, width=0.8, color="lightgrey", label="logged gaps")
        for family, values in fitted.items():
            if values is not None:
                color, style, name = _FAMILY_STYLE[family]
                left.plot(k, values, style, color=color, ms=3, lw=1, label=f"{name}, as logged")
        left.set_xlabel(f"gap, whole ticks of {summary.burstiness.gaps.resolution.label}")
        left.set_ylabel("share of gaps")
        left.set_title(
            f"logged gaps of 0-{int(k[-1])} ticks ({empirical.sum():.1%} of all)", fontsize=10
        )
    else:
        tick = h.tick_s
        shown = lo > 0 if tick is None else lo >= 0  # a grid's zero gaps: a linear first tick
        width = (hi - lo)[shown]
        centre = np.where(lo > 0, np.sqrt(lo * hi), (lo + hi) / 2)[shown]
        edges = np.append(lo[shown], hi[shown][-1])
        density = np.where(empirical[shown] > 0, empirical[shown] / width, np.nan)
        left.stairs(density, edges, color="grey", lw=1.5, label="logged gaps")
        for family, values in fitted.items():
            if values is not None:
                color, style, name = _FAMILY_STYLE[family]
                curve = np.asarray(values)[shown] / width
                left.plot(centre, curve, style, color=color, ms=2, lw=1, label=name)
        if tick is None:
            left.set_xscale("log")
            left.set_xlabel("gap (s)")
            zero = float(np.asarray(h.cdf_empirical)[0] - empirical[0])
            extra = f"; {zero:.1%} of gaps below the first bin" if zero >= 0.0005 else ""
        else:
            left.set_xscale("symlog", linthresh=tick, linscale=0.4)
            left.set_xlabel(f"gap (s; linear below one tick of {tick:g} s: the zero gaps)")
            extra = f"; {empirical[0]:.2%} of gaps are 0 ticks"
        left.set_ylabel("share of gaps per second")
        left.set_title(f"logged gaps, log bins up to p99.9{extra}", fontsize=10)
    left.set_yscale("log")
    left.legend(loc="upper right", fontsize=8)
    pp, diff = axes["pp"], axes["diff"]
    pp.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    diff.axhline(0.0, color="grey", lw=0.8, ls=":")
    ks = {"gamma": check.ks_gamma, "weibull": check.ks_weibull}
    cdfs = {"gamma": h.cdf_gamma, "weibull": h.cdf_weibull}
    observed = np.asarray(h.cdf_empirical)
    for family, cdf in cdfs.items():
        if cdf is not None:
            color, style, name = _FAMILY_STYLE[family]
            label = f"{name} (KS {ks[family]:.4f})"
            pp.plot(cdf, observed, style, color=color, ms=3, lw=1, label=label)
            diff.plot(cdf, observed - np.asarray(cdf), style, color=color, ms=3, lw=1, label=label)
    pp.set_xlim(0, 1)
    pp.set_ylim(0, 1)
    pp.set_title("P-P plot at the bins' upper edges", fontsize=10)
    pp.set_ylabel("empirical CDF")
    diff.set_xlim(0, 1)
    diff.set_title("empirical minus fitted CDF", fontsize=10)
    for ax in (pp, diff):
        ax.set_xlabel("fitted CDF (as logged)")
        if any(c is not None for c in cdfs.values()):
            ax.legend(loc="lower right" if ax is pp else "best", fontsize=8)
        else:
            ax.text(0.5, 0.5, "no identifiable fit", ha="center", va="center")
    return to_png(fig)


def day_slots(summary: Summary) -> bytes | None:
    """Work-day mean Gamma shape (alpha) and scale (beta) per 20-minute slot of the day,
    with a band of one standard deviation across days, and the mean rate."""
    table = summary.workday_slots
    if table.slots is None:
        return None
    hours = np.array([s.start_s for s in table.slots]) / HOUR + table.slot_s / 2 / HOUR
    fig, axes = grid(1, 3, height=2.9)
    series = (
        ("shape", "shape_sd", "Gamma α (shape)", "tab:red"),
        ("scale", "scale_sd", "Gamma β (scale, s)", "tab:purple"),
    )
    for ax, (key, sd_key, title, color) in zip(axes[0][:2], series, strict=True):
        mean = _none_to_nan([getattr(s, key) for s in table.slots])
        sd = _none_to_nan([getattr(s, sd_key) for s in table.slots])
        ax.fill_between(hours, mean - sd, mean + sd, color=color, alpha=0.2, lw=0)
        ax.plot(hours, mean, ".-", color=color, ms=3, lw=1)
        ax.set_title(title, fontsize=10)
        if key == "shape":
            ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        else:
            ax.set_ylim(bottom=0)
    rate = axes[0][2]
    rate.plot(hours, _none_to_nan([s.rate_rps for s in table.slots]), ".-", ms=3, lw=1)
    rate.set_title("mean rate (requests/s)", fontsize=10)
    rate.set_ylim(bottom=0)
    for ax in axes[0]:
        ax.set_xlim(0, 24)
        ax.set_xticks(range(0, 25, 4))
        ax.set_xlabel(f"hour of day ({table.days})")
    return to_png(fig)
