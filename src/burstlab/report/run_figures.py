"""The figures of a run's records: latency over time and its distributions, failures
over time, schedule lag and requested against achieved lengths.

Times on the x axes are intended send times from the run's start
(:mod:`burstlab.report.time_axis`); latencies are in milliseconds. Figure labels
never carry text from the run (model names, errors), so matplotlib's mathtext
cannot be fed hostile input.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from burstlab.report import drawing, time_axis
from burstlab.results.metrics import BY_NAME
from burstlab.results.records import ERROR_KINDS
from burstlab.results.slo import SLO
from burstlab.results.summary import LAG_P99_LIMIT_S

KIND_COLOURS = {
    "http_429": "#ff7f0e",
    "http_3xx": "#bcbd22",
    "http_4xx": "#e377c2",
    "http_5xx": "#d62728",
    "timeout": "#9467bd",
    "connect": "#8c564b",
    "reset": "#1f77b4",
    "stream_error": "#17becf",
    "truncated": "#2ca02c",
    "empty": "#7f7f7f",
    "internal": "#000000",
    "other": "#aec7e8",
    "cancelled": "#c7c7c7",
    "not_sent": "#e7e7e7",
}


def figures(
    table: pl.DataFrame,
    slo: SLO | None,
    window: float,
    sample: pl.DataFrame | None = None,
    *,
    client: bool = True,
) -> list[tuple[str, bytes | None]]:
    """(caption, PNG or None) of every figure of a run's records, ``window`` seconds
    wide where a figure counts per window. ``sample`` (some of ``table``'s rows, for a
    large run) is what the per-request figures draw; counts per window use them all.
    ``client=False`` leaves out the client's figures (schedule lag, requested against
    achieved lengths): a simulation's client is perfect, so they would say nothing."""
    shown = table if sample is None else sample
    drawn = (
        ""
        if sample is None
        else f" (drawn from {sample.height:,} of the {table.height:,} requests, evenly "
        "spread in intended time)"
    )
    made = [
        (
            "TTFT and E2E (from sent) of each ok request against its intended send time; "
            f"lines are the p50 and p99 per {window:g}-s window, orange the offered rate" + drawn,
            latency_over_time(table, window, shown),
        ),
        (
            "Latency distributions of ok requests: solid blue from sent, dashed purple "
            "from intended (what the user saw); dotted red lines are the SLOs" + drawn,
            latency_cdfs(shown, slo),
        ),
        (
            f"Requests that did not succeed, per {window:g}-s window, by kind; "
            "grey: every scheduled request",
            failures_over_time(table, window),
        ),
    ]
    if not client:
        return made
    return [
        *made,
        (
            f"Schedule lag (dispatched minus intended send time); a p99 above "
            f"{LAG_P99_LIMIT_S * 1e3:g} ms means the client, not the server, set the pace" + drawn,
            lag_histogram(shown),
        ),
        (
            "Requested against achieved lengths of ok requests: points below the line "
            "stopped early (EOS not ignored, or a max-tokens cap)" + drawn,
            lengths_scatter(shown),
        ),
    ]


def latency_over_time(
    table: pl.DataFrame, window: float, sample: pl.DataFrame | None = None
) -> bytes | None:
    """TTFT and E2E of each ok request (ms) against intended time, with per-window
    p50/p99 and the offered request rate on a second axis; ``None`` with no ok request.
    Points and percentiles come from ``sample`` when given, the rate from ``table``."""
    shown = table if sample is None else sample
    if not (shown["outcome"] == "ok").any():
        return None
    span = time_axis.span(table)
    scale, unit = time_axis.time_unit(span + window)
    starts, offered = time_axis.offered(table, window)
    edges, rates = time_axis.steps(starts / scale, offered / window, window / scale)
    ok = shown.filter(pl.col("outcome") == "ok")
    fig, axes = drawing.grid(2, 1, height=3.1)
    for ax, column in ((axes[0, 0], "ttft_s"), (axes[1, 0], "e2e_s")):
        name = BY_NAME[column].label
        part = ok.select("arrival_s", (pl.col(column) * 1e3).alias("ms")).drop_nulls()
        part = part.filter(pl.col("ms").is_finite() & pl.col("arrival_s").is_finite())
        rate = ax.twinx()
        rate.step(edges, rates, where="post", color="tab:orange", lw=1.3, label="offered req/s")
        rate.set_ylabel("offered req/s", color="tab:orange")
        rate.set_ylim(0, max(float(rates.max()), 1e-9) * 1.15)
        rate.tick_params(axis="y", colors="tab:orange")
        ax.set_zorder(rate.get_zorder() + 1)
        ax.patch.set_visible(False)
        ax.set_ylabel(f"{name} from sent (ms)")
        if part.height == 0:
            ax.text(0.5, 0.5, "no successful requests", transform=ax.transAxes, ha="center")
            ax.set_yticks([])
        else:
            x = part["arrival_s"].to_numpy()
            y = part["ms"].to_numpy()
            thin = drawing.thin(x.size)
            ax.plot(x[thin] / scale, y[thin], ".", ms=3, color="tab:blue", alpha=0.35, label=name)
            per = (
                part.group_by((pl.col("arrival_s") // window).alias("w"))
                .agg(
                    pl.col("ms").quantile(0.5).alias("p50"),
                    pl.col("ms").quantile(0.99).alias("p99"),
                )
                .sort("w")
            )
            centres = (per["w"].to_numpy() + 0.5) * window / scale
            ax.plot(centres, per["p50"].to_numpy(), "-", color="black", lw=1.5, label="p50")
            ax.plot(centres, per["p99"].to_numpy(), "-", color="tab:red", lw=1.5, label="p99")
            if drawing.log_scale_fits(y):
                ax.set_yscale("log")
            else:
                ax.set_ylim(0, float(y.max()) * 1.05 or 1.0)
        handles, labels = ax.get_legend_handles_labels()
        more, names = rate.get_legend_handles_labels()
        drawing.legend_above(ax, handles + more, labels + names)
        ax.set_xlim(edges[0], edges[-1])
    axes[1, 0].set_xlabel(f"intended send time ({unit} from start)")
    return drawing.to_png(fig)


def _ecdf(ax: Any, values: np.ndarray, **style: Any) -> None:
    v = np.sort(values[np.isfinite(values)])
    if v.size == 0:
        return
    q = np.linspace(0.0, 1.0, min(v.size, 1000))
    ax.plot(np.quantile(v, q), q, **style)


def latency_cdfs(table: pl.DataFrame, slo: SLO | None) -> bytes | None:
    """CDFs (ms) of TTFT and E2E from sent (solid) and intended (dashed), TPOT and ITL."""
    ok = table.filter(pl.col("outcome") == "ok")
    if ok.height == 0:
        return None
    gaps = ok["chunk_s"].drop_nulls().list.diff(null_behavior="drop").explode().drop_nulls()
    panels = (
        ("ttft_s", slo.ttft if slo else None, _ms(ok["ttft_s"]), _ms(ok["ttft_intended_s"])),
        ("e2e_s", slo.e2e if slo else None, _ms(ok["e2e_s"]), _ms(ok["e2e_intended_s"])),
        ("tpot_s", slo.tpot if slo else None, _ms(ok["tpot_s"]), None),
        ("itl_s", None, _ms(gaps), None),
    )
    fig, axes = drawing.grid(2, 2, height=3.0)
    for ax, (metric, limit, sent, intended) in zip(axes.flat, panels, strict=True):
        ax.set_title(BY_NAME[metric].label)
        ax.set_xlabel("ms")
        ax.set_ylabel("CDF")
        ax.grid(alpha=0.3)
        if sent.size == 0:
            why = "no streamed chunks" if metric == "itl_s" else "no requests with 2+ tokens"
            ax.text(0.5, 0.5, why, transform=ax.transAxes, ha="center")
            continue
        _ecdf(ax, sent, color="tab:blue", label="from sent")
        both = sent
        if intended is not None and intended.size:
            _ecdf(ax, intended, color="tab:purple", ls="--", label="from intended")
            both = np.concatenate([sent, intended])
        if limit is not None:
            ax.axvline(limit * 1e3, color="tab:red", ls=":", label="SLO")
        if drawing.log_scale_fits(both, ratio=30.0):
            ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.legend(loc="lower right", fontsize=8)
    return drawing.to_png(fig)


def _ms(series: pl.Series) -> np.ndarray:
    return time_axis.finite(series) * 1e3


def failures_over_time(table: pl.DataFrame, window: float) -> bytes | None:
    """Stacked bars of failed (by kind), cancelled and not-sent requests per window,
    with every scheduled request per window on a second axis."""
    bad = table.select("arrival_s", "outcome", "error_kind").filter(pl.col("outcome") != "ok")
    if bad.height == 0:
        return None
    kind = (
        pl.when(pl.col("outcome") == "failed")
        .then(
            pl.when(pl.col("error_kind").is_in(list(ERROR_KINDS)))
            .then(pl.col("error_kind"))
            .otherwise(pl.lit("other"))
        )
        .when(pl.col("outcome").is_in(["cancelled", "not_sent"]))
        .then(pl.col("outcome"))
        .otherwise(pl.lit("other"))
    )
    starts, offered = time_axis.offered(table, window)
    binned = (
        bad.filter(pl.col("arrival_s").is_finite())
        .select(
            ((pl.col("arrival_s") - starts[0]) // window).cast(pl.Int64).alias("w"),
            kind.alias("k"),
        )
        .group_by("w", "k")
        .len()
    )
    scale, unit = time_axis.time_unit(time_axis.span(table) + window)
    fig, axes = drawing.grid(1, 1, height=3.4)
    ax = axes[0, 0]
    bottom = np.zeros(starts.size)
    present = set(binned["k"].to_list())
    for k in (*ERROR_KINDS, "other", "cancelled", "not_sent"):
        if k not in present:
            continue
        part = binned.filter(pl.col("k") == k)
        heights = np.zeros(starts.size)
        idx = np.clip(part["w"].to_numpy(), 0, starts.size - 1)
        np.add.at(heights, idx, part["len"].to_numpy())
        ax.bar(
            starts / scale,
            heights,
            width=window / scale,
            bottom=bottom,
            align="edge",
            color=KIND_COLOURS[k],
            edgecolor="none",
            label=k,
        )
        bottom += heights
    edges, counts = time_axis.steps(starts / scale, offered, window / scale)
    label = f"per {window:g}-s window"
    # Few failures next to many requests get their own axis, or the bars would vanish.
    shared = bottom.max() >= 0.25 * counts.max()
    scheduled = ax if shared else ax.twinx()
    scheduled.step(edges, counts, where="post", color="grey", lw=1, label="scheduled", zorder=3)
    if shared:
        ax.set_ylim(0, max(float(counts.max()), 1.0) * 1.1)
        ax.set_ylabel(f"requests {label}")
    else:
        scheduled.set_ylim(0, max(float(counts.max()), 1.0) * 1.15)
        scheduled.set_ylabel(f"scheduled {label}", color="grey")
        scheduled.tick_params(axis="y", colors="grey")
        ax.set_zorder(scheduled.get_zorder() + 1)
        ax.patch.set_visible(False)
        ax.set_ylim(0, max(float(bottom.max()), 1.0) * 1.1)
        ax.set_ylabel(f"not ok {label}")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel(f"intended send time ({unit} from start)")
    handles, labels = ax.get_legend_handles_labels()
    if not shared:
        more, names = scheduled.get_legend_handles_labels()
        handles, labels = handles + more, labels + names
    drawing.legend_above(ax, handles, labels)
    return drawing.to_png(fig)


def lag_histogram(table: pl.DataFrame) -> bytes | None:
    """Histogram of schedule lag (ms) with log-scaled counts, p99 and the 10 ms limit marked."""
    lag = _ms(table.filter(pl.col("dispatched_s").is_not_null())["schedule_lag_s"])
    if lag.size == 0:
        return None
    lo, hi = min(float(lag.min()), 0.0), float(lag.max())
    hi = max(hi, lo + 1.0)  # at least 1 ms wide, so a constant lag is a bar, not a sliver
    fig, axes = drawing.grid(1, 1, height=3.0)
    ax = axes[0, 0]
    ax.hist(lag, bins=np.linspace(lo, hi, 81), color="tab:blue")
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.7)  # a single request stays visible
    p99 = float(np.percentile(lag, 99))
    ax.axvline(p99, color="black", ls="--", lw=1, label=f"p99 {p99:.3g} ms")
    limit = LAG_P99_LIMIT_S * 1e3
    if hi >= limit / 2:
        ax.axvline(limit, color="tab:red", ls=":", lw=1.2, label="client-bound p99 limit")
    ax.set_xlabel("schedule lag (ms)")
    ax.set_ylabel("requests (log)")
    ax.set_title(f"schedule lag of {lag.size:,} dispatched requests")
    ax.legend(loc="upper right", fontsize=8)
    return drawing.to_png(fig)


def lengths_scatter(table: pl.DataFrame) -> bytes | None:
    """Requested against achieved output (and input, where known) tokens, with y = x."""
    ok = table.filter(pl.col("outcome") == "ok")
    pairs = []
    for name, requested, achieved in (
        ("output", "output_tokens", "output_tokens_achieved"),
        ("input", "input_tokens", "input_tokens_achieved"),
    ):
        part = ok.select(requested, achieved).drop_nulls()
        if part.height:
            pairs.append(
                (
                    name,
                    part[requested].to_numpy().astype(float),
                    part[achieved].to_numpy().astype(float),
                )
            )
    if not pairs:
        return None
    fig, axes = drawing.grid(1, len(pairs), height=3.6)
    for ax, (name, req, got) in zip(axes[0], pairs, strict=True):
        thin = drawing.thin(req.size)
        ax.plot(req[thin], got[thin], ".", ms=3, alpha=0.35, color="tab:blue")
        top = float(max(req.max(), got.max(), 1.0))
        both = np.concatenate([req, got])
        log = drawing.log_scale_fits(both, ratio=20.0)
        low = float(both[both > 0].min()) if log else 0.0
        ax.plot([low, top], [low, top], "--", color="grey", lw=1, label="y = x")
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
        differ = int((req != got).sum())
        ax.set_title(f"{name} tokens: {differ:,} of {req.size:,} differ")
        ax.set_xlabel("requested")
        ax.set_ylabel("achieved")
        ax.legend(loc="upper left", fontsize=8)
    return drawing.to_png(fig)


#: Replicas drawn one line each in the utilisation figure; a larger cluster is drawn
#: as its mean and the band between its least and most utilised replica.
UTILISATION_LINES = 8
#: At most this many time bins per line of the utilisation figure: a longer series is
#: drawn in groups of adjacent bins (their mean, exact: bins are equally wide).
FIGURE_BINS = 250
#: The utilisation series: column, label, colour of a single replica's line.
UTILISATION_SERIES = (
    ("busy_share", "busy share", "tab:blue"),
    ("mfu", "MFU", "tab:orange"),
    ("mbu", "MBU", "tab:green"),
)


def utilisation_figures(series: pl.DataFrame | None) -> list[tuple[str, bytes | None]]:
    """(caption, PNG) of the utilisation figure, when the run has a series
    (``utilisation.parquet``: one row per replica and time bin)."""
    if series is None or series.height == 0:
        return []
    bins = series.height // series["replica"].n_unique()
    bin_s = float(series["end_s"][0] - series["start_s"][0]) * _group(bins)
    roofline = series["mfu"].null_count() < series.height
    what = (
        "busy share (time running iterations), MFU (model FLOPs over the GPU's dense "
        "peak) and MBU (HBM bytes over its peak bandwidth), per GPU"
        if roofline
        else "busy share (time running iterations); MFU and MBU need a roofline cost "
        "model (a GPU datasheet)"
    )
    clustered = series["replica"].n_unique() > 1
    per = ", one line per replica, black their mean" if clustered else ""
    return [
        (
            f"Simulated GPU utilisation per {bin_s:g}-s bin, from the cost model: {what}{per}",
            utilisation_over_time(series),
        )
    ]


def utilisation_over_time(series: pl.DataFrame) -> bytes | None:
    """Busy share, MFU and MBU (%) against simulated time: one panel with a line per
    metric for one replica; a panel per metric with a line per replica (and their
    mean) for a cluster. ``series`` holds every replica's every bin, as
    :meth:`~burstlab.sim.utilisation.UtilisationSeries.table` writes it; a line
    has at most :data:`FIGURE_BINS` steps, whatever the run's length."""
    if series.height == 0:
        return None
    present = [s for s in UTILISATION_SERIES if series[s[0]].null_count() < series.height]
    ordered = series.sort("replica", "start_s")
    replicas = ordered["replica"].unique(maintain_order=True).to_list()
    bins = ordered.height // len(replicas)
    starts = ordered["start_s"].to_numpy()[:bins]
    end = float(starts[-1] + ordered["end_s"][0] - ordered["start_s"][0])
    scale, unit = time_axis.time_unit(end - float(starts[0]))
    k = _group(bins)
    x = np.append(starts[::k], end) / scale

    def percent(column: str) -> np.ndarray:
        """``(groups, replicas)`` of ``column`` in percent, each group of ``k`` bins
        their mean (the last group may be shorter)."""
        values = ordered[column].fill_null(0.0).to_numpy().reshape(len(replicas), bins)
        padded = np.full((len(replicas), -(-bins // k) * k), np.nan)
        padded[:, :bins] = values
        means = np.nanmean(padded.reshape(len(replicas), -1, k), axis=2)
        return np.asarray(means.T * 100.0, dtype=np.float64)

    if len(replicas) == 1:
        fig, axes = drawing.grid(1, 1, height=3.2, width=10.0)
        ax = axes[0, 0]
        for column, label, colour in present:
            y = percent(column)[:, 0]
            ax.step(x, np.append(y, y[-1]), where="post", color=colour, lw=1.1, label=label)
        _percent_axis(ax, "share (%)")
        ax.set_xlabel(f"simulated time ({unit})")
        drawing.legend_above(ax, *ax.get_legend_handles_labels())
        return drawing.to_png(fig)
    fig, axes = drawing.grid(len(present), 1, height=2.2, width=10.0)
    for ax, (column, label, _) in zip(axes[:, 0], present, strict=True):
        y = percent(column)
        mean = y.mean(axis=1)
        if len(replicas) <= UTILISATION_LINES:
            for i, rid in enumerate(replicas):
                ax.step(x, np.append(y[:, i], y[-1, i]), where="post", lw=0.8, label=f"r{rid}")
        else:
            lo, hi = y.min(axis=1), y.max(axis=1)
            ax.fill_between(
                x, np.append(lo, lo[-1]), np.append(hi, hi[-1]), step="post",
                color="tab:blue", alpha=0.25, lw=0, label=f"{len(replicas)} replicas, min-max",
            )  # fmt: skip
        ax.step(x, np.append(mean, mean[-1]), where="post", color="black", lw=1.4, label="mean")
        _percent_axis(ax, f"{label} (%)")
    drawing.legend_above(axes[0, 0], *axes[0, 0].get_legend_handles_labels())
    axes[-1, 0].set_xlabel(f"simulated time ({unit})")
    return drawing.to_png(fig)


def _group(bins: int) -> int:
    """Adjacent bins the utilisation figure draws as one, for at most :data:`FIGURE_BINS`."""
    return max(1, -(-bins // FIGURE_BINS))


def _percent_axis(ax: Any, label: str) -> None:
    """A 0-100% y axis (higher should a share exceed it), with a grid."""
    top = max([105.0] + [float(np.max(line.get_ydata())) * 1.05 for line in ax.get_lines()])
    ax.set_ylim(0, top)
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
