"""The server's own view beside the client's: figures of a bench run whose target gave
its account (llama.cpp's per-request ``timings``, its ``/metrics`` scraped with
``--scrape-metrics``).

- Over run time: the requests the client had in flight, against the server's requests
  holding a slot (``llamacpp:requests_processing``) and waiting for one
  (``llamacpp:requests_deferred``), and the server's KV use. The client's count above
  the server's two is requests in transit (sent and not yet seen, or finished and not
  yet read): a queue the server does not show.
- Per request: bench's TTFT and decode time minus the server's
  (:mod:`burstlab.bench.agreement`), in milliseconds.

Times are seconds from the run's ``t0``, like the other figures' intended send times.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from burstlab.bench.agreement import gap_summary, timing_gaps
from burstlab.bench.server_metrics import METRICS_FILE, read_server_metrics
from burstlab.report import drawing, time_axis
from burstlab.report.run_loader import Run


def figures(run: Run) -> list[tuple[str, bytes | None]]:
    """(caption, PNG) of the server-side figures a bench run supports (none otherwise)."""
    table = run.records
    if run.kind != "bench" or table is None or table.height == 0:
        return []
    made: list[tuple[str, bytes | None]] = []
    t0 = run.manifest.t0_perf_ns if run.manifest is not None else None
    scraped = read_server_metrics(run.path / METRICS_FILE, t0)
    if scraped is not None and scraped.height > 1:
        made.append(
            (
                "Client against server over the run: requests in flight as the client saw "
                "them, the server's requests holding a slot and waiting for one "
                f"(/metrics, {scraped.height:,} scrapes), and the server's KV use",
                queue_over_time(table, scraped),
            )
        )
    gaps = timing_gaps(table)
    if gaps.height:
        s = gap_summary(gaps)
        ttft, decode, idle = s["ttft_gap_ms"], s["decode_gap_ms"], s["idle_ttft_gap_ms"]
        idle_text = (
            f"; sent to an idle server ({idle['n']:,}) {idle['median']:.3g} ms" if idle["n"] else ""
        )
        made.append(
            (
                f"bench against the server's own timings ({gaps.height:,} requests): TTFT "
                f"minus the server's prompt time, median {ttft['median']:.3g} ms, p99 "
                f"{ttft['p99']:.3g} ms (network, parsing and waiting for a slot){idle_text}; "
                f"decode time minus the server's, median {decode['median']:.3g} ms, p99 "
                f"{decode['p99']:.3g} ms",
                gap_histograms(gaps),
            )
        )
    return made


def in_flight(table: pl.DataFrame, at: np.ndarray) -> np.ndarray:
    """Requests the client had sent and not yet finished reading at each time of ``at``."""
    sent = table.filter(pl.col("sent_s").is_not_null())
    starts = np.sort(sent["sent_s"].to_numpy())
    ends = np.sort(sent["end_s"].fill_null(np.inf).to_numpy())
    counts: np.ndarray = np.searchsorted(starts, at, side="right") - np.searchsorted(
        ends, at, side="right"
    )
    return counts


def queue_over_time(table: pl.DataFrame, scraped: pl.DataFrame) -> bytes | None:
    """Two panels against run time: requests (client in flight; server processing,
    waiting, and their sum) and the server's KV use in percent, where it is known."""
    t = scraped["t_s"].to_numpy()
    span = float(t[-1] - t[0]) if t.size > 1 else 1.0
    scale, unit = time_axis.time_unit(max(span, 1e-9))
    x = t / scale
    has_kv = "kv_use" in scraped.columns and scraped["kv_use"].null_count() < scraped.height
    fig, axes = drawing.grid(2 if has_kv else 1, 1, height=2.6, width=10.0)
    ax = axes[0, 0]
    ax.step(x, in_flight(table, t), where="post", color="black", lw=1.2, label="client: in flight")
    server = np.zeros(t.size)
    for column, label, colour in (
        ("processing", "server: holding a slot", "tab:blue"),
        ("queued", "server: waiting for a slot", "tab:orange"),
    ):
        if column in scraped.columns:
            y = scraped[column].fill_null(0).to_numpy().astype(np.float64)
            server += y
            ax.step(x, y, where="post", color=colour, lw=1.0, label=label)
    ax.step(x, server, where="post", color="tab:green", lw=1.0, ls="--", label="server: both")
    ax.set_ylabel("requests")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    drawing.legend_above(ax, *ax.get_legend_handles_labels())
    if has_kv:
        kv = axes[1, 0]
        kv.step(x, scraped["kv_use"].fill_null(0.0).to_numpy() * 100.0, where="post",
                color="tab:purple", lw=1.0)  # fmt: skip
        kv.set_ylabel("KV use (%)")
        kv.set_ylim(0, 105)
        kv.grid(alpha=0.3)
    axes[-1, 0].set_xlabel(f"run time ({unit})")
    return drawing.to_png(fig)


def gap_histograms(gaps: pl.DataFrame) -> bytes | None:
    """Histograms of the TTFT and decode gaps (ms), medians marked; requests sent to an
    idle server drawn apart in the TTFT panel."""
    fig, axes = drawing.grid(1, 2, height=3.0, width=10.0)
    for ax, column, title in (
        (axes[0, 0], "ttft_gap_ms", "TTFT: bench minus server (ms)"),
        (axes[0, 1], "decode_gap_ms", "decode: bench minus server (ms)"),
    ):
        values = gaps[column].drop_nulls().to_numpy()
        if values.size == 0:
            continue
        lo, hi = float(values.min()), float(values.max())
        bins = np.linspace(lo, max(hi, lo + 0.01), 61)
        ax.hist(values, bins=bins, color="tab:blue", alpha=0.7, label="all")
        if column == "ttft_gap_ms":
            idle = gaps.filter(pl.col("idle"))[column].drop_nulls().to_numpy()
            if idle.size:
                ax.hist(idle, bins=bins, color="tab:green", alpha=0.8, label="sent to idle server")
        median = float(np.median(values))
        ax.axvline(median, color="black", ls="--", lw=1, label=f"median {median:.3g}")
        ax.set_yscale("log")
        ax.set_ylim(bottom=0.7)
        ax.set_xlabel(title)
        ax.set_ylabel("requests (log)")
        ax.legend(loc="upper right", fontsize=8)
    return drawing.to_png(fig)
