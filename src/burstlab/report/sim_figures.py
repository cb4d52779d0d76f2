"""The figures only a simulated run has: the engine's telemetry over time, and the
instance count of every autoscaling policy against the offered rate."""

from __future__ import annotations

import numpy as np
import polars as pl

from burstlab.report import drawing, time_axis
from burstlab.report.run_loader import Autoscale, Run


def figures(run: Run, window: float) -> list[tuple[str, bytes | None]]:
    """(caption, PNG or None) of every simulation figure the run supports."""
    made: list[tuple[str, bytes | None]] = []
    if run.autoscale is not None and run.autoscale.timelines and run.records is not None:
        made.append(
            (
                "Instances paid for over time under each autoscaling policy (booting and "
                f"draining included), and the arrival rate per {window:g}-s window",
                autoscale_timelines(run.autoscale, run.records, window),
            )
        )
    if run.telemetry is not None:
        made.append(
            (
                "Simulated engine over time: batch size, running and waiting requests, KV "
                "blocks in use, and preemptions so far (one point per scheduling step)",
                engine_telemetry(run.telemetry),
            )
        )
    return made


def engine_telemetry(steps: pl.DataFrame) -> bytes | None:
    """Batch, running, waiting, KV blocks and preemptions of a simulated engine
    against time (from ``telemetry.parquet``, one row per step or fast run; one
    line per replica, up to eight, for a cluster)."""
    if steps.height == 0:
        return None
    if "replica" not in steps.columns:
        steps = steps.with_columns(pl.lit(0).alias("replica"))
    start = steps["start_s"].to_numpy()
    scale, unit = time_axis.time_unit(float(start.max() - start.min()))
    fig, axes = drawing.grid(3, 1, height=2.2, width=10.0)
    (a, b, c) = axes[:, 0]
    replicas = sorted(steps["replica"].unique().to_list())[:8]
    single = len(replicas) == 1
    for k in replicas:
        part = steps.filter(pl.col("replica") == k)
        keep = drawing.thin(part.height)
        t = part["start_s"].to_numpy()[keep] / scale
        tag = "" if single else f" r{k}"
        for column in ("batch", "running", "waiting") if single else ("running", "waiting"):
            a.step(t, part[column].to_numpy()[keep], where="post", label=column + tag, lw=0.8)
        b.step(t, part["kv_blocks"].to_numpy()[keep], where="post", label=f"r{k}", lw=0.8)
        c.step(t, part["preemptions"].to_numpy()[keep], where="post", label=f"r{k}", lw=0.8)
    a.set_ylabel("requests")
    a.legend(loc="upper right", fontsize=7, ncol=2 if single else 4)
    b.set_ylabel("KV blocks used")
    c.set_ylabel("preemptions (cumulative)")
    c.set_xlabel(f"simulated time ({unit})")
    if not single:
        b.legend(loc="upper right", fontsize=7, ncol=4)
    for ax in (a, b, c):
        ax.grid(alpha=0.3)
    return drawing.to_png(fig)


def autoscale_timelines(scaled: Autoscale, table: pl.DataFrame, window: float) -> bytes | None:
    """Instance count of every policy against time, with the offered rate."""
    timelines = scaled.timelines
    starts, counts = time_axis.offered(table, window)
    rate = counts / window
    end = float(table["arrival_s"].max() or 0.0)  # type: ignore[arg-type]
    scale, unit = time_axis.time_unit(time_axis.span(table))
    fig, axes = drawing.grid(1, 1, height=3.0, width=10.0)
    ax = axes[0, 0]
    handles = []
    for name, points in timelines.items():
        if not points:
            continue
        t = np.array([p[0] for p in points] + [end], dtype=np.float64) / scale
        c = np.array([p[1] for p in points] + [points[-1][1]], dtype=np.float64)
        (line,) = ax.step(t, c, where="post", lw=1.2, label=name)
        handles.append(line)
    ax.set_ylabel("instances")
    ax.set_xlabel(f"time ({unit})")
    ax.grid(alpha=0.3)
    twin = ax.twinx()
    x, y = time_axis.steps(starts, rate, window)
    (offered,) = twin.plot(x / scale, y, color="tab:orange", lw=0.8, alpha=0.6, label="arrivals/s")
    twin.set_ylabel("arrivals per second")
    drawing.legend_above(ax, [*handles, offered], [h.get_label() for h in [*handles, offered]])
    return drawing.to_png(fig)
