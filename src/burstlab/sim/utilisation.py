"""GPU utilisation of a simulation over time: busy share, MFU and MBU per replica.

For "GPU utilization tuning": how much of the hardware a configuration uses, when.
Computed after the run from :class:`~burstlab.sim.engine.SimResult`'s telemetry
(one row per step or run of identical decode steps, ``start_s`` to ``end_s``) and
its ``load`` (the rows' summed batch numbers), through the cost model:

``busy``
    share of a time bin in which the replica ran iterations (telemetry rows cover
    iterations; the time between rows is idle).
``mfu`` (model FLOPs utilisation)
    FLOPs the cost model says the bin's iterations did on one GPU
    (:meth:`~burstlab.sim.cost.Roofline.work`), over the GPU's datasheet peak dense
    FLOP/s (``gpu.flops``) times the bin's seconds.
``mbu`` (memory-bandwidth utilisation)
    HBM bytes one GPU moved (weights once per iteration, KV cache read and
    written), over its peak bandwidth (``gpu.mem_bw``) times the bin's seconds.

All three are shares (0-1). MFU and MBU are per GPU, and also per replica: a
replica's ``tp`` GPUs do equal shares in lock step. They exist for a
:class:`~burstlab.sim.cost.Roofline` only: a :class:`~burstlab.sim.cost.Linear`
model (fitted timings, no datasheet) knows durations but not work, so its
utilisation is the busy share alone (``basis="busy_only"``); so is a result whose
engine did not report the load (decode rows with no decode sequences).

A telemetry row's work is spread evenly over its time (a run of decode steps
grows its context by one token per step, so this is close). Bins are at least
:data:`MIN_BIN_ITERATIONS` mean iterations wide (narrower bins would read as 0 or
1 by quantisation) and at most :data:`MAX_BINS` per replica, rounded up to 1, 2
or 5 times a power of ten seconds, with edges at multiples of their width. The
first and last bins reach past the first and last iterations, where the engine
is idle; the means over the run divide by the window from the first iteration's
start to the last one's end instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from burstlab.results.summary import Peak, ReplicaUtilisation, UtilisationStats
from burstlab.sim.cost import Roofline
from burstlab.sim.engine import CostModel
from burstlab.sim.engine.result import LOAD_COLUMNS, TELEMETRY_COLUMNS, SimResult

#: At most this many time bins per replica.
MAX_BINS = 2000
#: A bin is at least this many mean iterations wide.
MIN_BIN_ITERATIONS = 20
#: The columns of :meth:`UtilisationSeries.table` (``utilisation.parquet``).
UTILISATION_COLUMNS = ("replica", "start_s", "end_s", "busy_share", "mfu", "mbu")

_START, _END, _ITER, _PREFILL = (
    TELEMETRY_COLUMNS.index(c) for c in ("start_s", "end_s", "iterations", "prefill_tokens")
)
_DS, _PA, _DC = (LOAD_COLUMNS.index(c) for c in ("decode_seqs", "prefill_attn", "decode_ctx"))


@dataclass(frozen=True, slots=True)
class UtilisationSeries:
    """Utilisation per replica per time bin, and its totals over the window.

    ``busy``, ``mfu`` and ``mbu`` are ``(replicas, bins)`` shares; bin ``j`` covers
    ``[bins_from_s + j * bin_s, bins_from_s + (j + 1) * bin_s)`` (seconds of
    simulated time; ``bins_from_s`` is the multiple of ``bin_s`` at or before the
    window's ``start_s``, so edges are round). ``mfu`` and ``mbu`` are ``None``
    when ``basis`` is ``"busy_only"``. Totals per replica: ``busy_s`` (seconds
    running iterations), ``flops`` and ``bytes`` (one GPU's). ``cluster``: the
    result came from several replicas.
    """

    basis: Literal["roofline", "busy_only"]
    start_s: float
    end_s: float
    bin_s: float
    bins_from_s: float
    replicas: np.ndarray
    busy: np.ndarray
    mfu: np.ndarray | None
    mbu: np.ndarray | None
    busy_s: np.ndarray
    flops: np.ndarray | None
    bytes: np.ndarray | None
    peak_flops: float | None
    peak_bw: float | None
    cluster: bool

    @property
    def window_s(self) -> float:
        """Seconds from the first iteration's start to the last one's end."""
        return self.end_s - self.start_s

    def table(self) -> pl.DataFrame:
        """One row per replica and bin (:data:`UTILISATION_COLUMNS`; ``start_s`` and
        ``end_s`` in simulated seconds; ``mfu``/``mbu`` null without a datasheet)."""
        n_rep, n_bins = self.busy.shape
        edges = self.bins_from_s + self.bin_s * np.arange(n_bins + 1)
        nulls = pl.Series(values=[None] * (n_rep * n_bins), dtype=pl.Float64)
        return pl.DataFrame(
            {
                "replica": np.repeat(self.replicas, n_bins).astype(np.int32),
                "start_s": np.tile(edges[:-1], n_rep),
                "end_s": np.tile(edges[1:], n_rep),
                "busy_share": self.busy.ravel(),
                "mfu": self.mfu.ravel() if self.mfu is not None else nulls,
                "mbu": self.mbu.ravel() if self.mbu is not None else nulls,
            }
        )

    def stats(self) -> UtilisationStats:
        """The summary's figures: means over the window (and over replicas), means
        over busy time, the peak bin of each series and each replica's means."""
        window = max(self.window_s, 1e-12)
        busy_share = self.busy_s / window
        busy_total = float(self.busy_s.sum())
        mfu = mbu = None
        mfu_busy = mbu_busy = None
        if self.flops is not None and self.peak_flops is not None:
            mfu = self.flops / (self.peak_flops * window)
            if busy_total > 0:
                mfu_busy = float(self.flops.sum()) / (self.peak_flops * busy_total)
        if self.bytes is not None and self.peak_bw is not None:
            mbu = self.bytes / (self.peak_bw * window)
            if busy_total > 0:
                mbu_busy = float(self.bytes.sum()) / (self.peak_bw * busy_total)
        replicas = (
            [
                ReplicaUtilisation(
                    replica=int(r),
                    busy_share=min(float(busy_share[i]), 1.0),
                    mfu=None if mfu is None else float(mfu[i]),
                    mbu=None if mbu is None else float(mbu[i]),
                )
                for i, r in enumerate(self.replicas)
            ]
            if self.cluster
            else []
        )
        return UtilisationStats(
            basis=self.basis,
            window_s=self.window_s,
            bin_s=self.bin_s,
            busy_share=min(float(busy_share.mean()), 1.0),
            mfu=None if mfu is None else float(mfu.mean()),
            mbu=None if mbu is None else float(mbu.mean()),
            mfu_when_busy=mfu_busy,
            mbu_when_busy=mbu_busy,
            peak_busy_share=self._peak(self.busy),
            peak_mfu=None if self.mfu is None else self._peak(self.mfu),
            peak_mbu=None if self.mbu is None else self._peak(self.mbu),
            replicas=replicas,
        )

    def _peak(self, shares: np.ndarray) -> Peak:
        """The highest bin of ``shares`` (the first, on a tie)."""
        i, j = np.unravel_index(int(np.argmax(shares)), shares.shape)
        return Peak(
            value=float(shares[i, j]),
            start_s=float(self.bins_from_s + j * self.bin_s),
            replica=int(self.replicas[i]) if self.cluster else None,
        )


def utilisation(
    result: SimResult, cost: CostModel, *, max_bins: int = MAX_BINS
) -> UtilisationSeries | None:
    """The utilisation of ``result`` under ``cost`` (the cost model the simulation
    used; MFU and MBU need a :class:`~burstlab.sim.cost.Roofline`), in at most
    ``max_bins`` bins per replica; ``None`` when the result has no iteration.

    Linear in the number of telemetry rows (a cumulative sum per series and
    replica, and a binary search per bin edge), so it costs little beside the
    simulation: about 0.2 s for 2.7 million rows.
    """
    if max_bins < 1:
        raise ValueError(f"max_bins must be at least 1, got {max_bins}")
    rows = result.telemetry
    if rows.shape[0] == 0:
        return None
    start, end = rows[:, _START], rows[:, _END]
    t0, t1 = float(start.min()), float(end.max())
    iterations = rows[:, _ITER]
    busy_rows = end - start
    mean_iteration_s = float(busy_rows.sum()) / max(float(iterations.sum()), 1.0)
    bin_s, first, edges = _edges(t0, t1, mean_iteration_s, max_bins)

    work, peaks = None, None
    if isinstance(cost, Roofline) and _has_load(rows, result.load):
        load = result.load
        work = cost.work(
            rows[:, _PREFILL] * iterations, load[:, _PA], load[:, _DS], load[:, _DC], iterations
        )
        peaks = (float(cost.gpu.flops), float(cost.gpu.mem_bw))

    in_order = bool((start[1:] >= start[:-1]).all())
    parts: list[slice] | list[np.ndarray]
    if result.replica is None and in_order:  # one engine's rows, in time order: views
        ids, parts = np.zeros(1, dtype=np.int64), [slice(None)]
    else:
        replica = (
            np.zeros(rows.shape[0], dtype=np.int64)
            if result.replica is None
            else np.asarray(result.replica, dtype=np.int64)
        )
        ids = np.unique(replica)
        order = np.argsort(replica, kind="stable") if in_order else np.lexsort((start, replica))
        bounds = np.searchsorted(replica[order], np.append(ids, ids[-1] + 1))
        parts = [order[bounds[i] : bounds[i + 1]] for i in range(ids.size)]
    busy = np.stack([_spread(start[p], end[p], busy_rows[p], edges) for p in parts])
    busy_s = np.array([busy_rows[p].sum() for p in parts])
    mfu = mbu = flops = moved = None
    if work is not None and peaks is not None:
        spread = [(start[p], end[p], work.flops[p], work.bytes[p]) for p in parts]
        mfu = np.stack([_spread(s, e, f, edges) for s, e, f, _ in spread]) / (peaks[0] * bin_s)
        mbu = np.stack([_spread(s, e, b, edges) for s, e, _, b in spread]) / (peaks[1] * bin_s)
        flops = np.array([f.sum() for _, _, f, _ in spread])
        moved = np.array([b.sum() for _, _, _, b in spread])
    return UtilisationSeries(
        basis="busy_only" if peaks is None else "roofline",
        start_s=t0,
        end_s=t1,
        bin_s=bin_s,
        bins_from_s=first,
        replicas=ids,
        busy=np.clip(busy / bin_s, 0.0, 1.0),  # rounding only: rows never overlap
        mfu=mfu,
        mbu=mbu,
        busy_s=busy_s,
        flops=flops,
        bytes=moved,
        peak_flops=None if peaks is None else peaks[0],
        peak_bw=None if peaks is None else peaks[1],
        cluster=result.replica is not None,
    )


def _edges(
    t0: float, t1: float, mean_iteration_s: float, max_bins: int
) -> tuple[float, float, np.ndarray]:
    """Bin width, first edge and every edge of the bins over ``[t0, t1]``: round
    edges, as the report's windows, at most ``max_bins`` (the first may add a bin)."""
    bin_s = _bin_width(max(t1 - t0, 1e-9) / max_bins, mean_iteration_s)
    while True:
        first = math.floor(t0 / bin_s) * bin_s
        n_bins = max(1, math.ceil((t1 - first) / bin_s))
        if n_bins <= max_bins:
            break
        bin_s = _bin_width(bin_s * 1.01, 0.0)
    return bin_s, first, first + bin_s * np.arange(n_bins + 1)


def streamed_utilisation(
    telemetry: pl.LazyFrame,
    cost: CostModel,
    *,
    max_bins: int = MAX_BINS,
    chunk_rows: int = 1 << 20,
) -> UtilisationSeries | None:
    """:func:`utilisation` of one engine's telemetry read from a table (the columns
    :data:`TELEMETRY_COLUMNS` and :data:`LOAD_COLUMNS`, rows in time order, as
    ``telemetry.parquet`` holds them), ``chunk_rows`` rows at a time, so memory stays
    bounded by a chunk however long the run: one pass for the window and the mean
    iteration, one to spread each chunk's rows over the bins (spreading is additive
    over rows). The same figures as :func:`utilisation` of the rows in memory, up to
    the order of floating-point sums."""
    if max_bins < 1:
        raise ValueError(f"max_bins must be at least 1, got {max_bins}")
    start, end, iters, prefill = (
        pl.col(c) for c in ("start_s", "end_s", "iterations", "prefill_tokens")
    )
    totals = (
        telemetry.select(
            pl.len().alias("rows"),
            start.min().alias("t0"),
            end.max().alias("t1"),
            (end - start).sum().alias("busy"),
            iters.cast(pl.Float64).sum().alias("iterations"),
            ((prefill == 0) & (pl.col("decode_seqs") <= 0)).any().alias("unloaded"),
        )
        .collect()
        .row(0, named=True)
    )
    if not totals["rows"]:
        return None
    t0, t1 = float(totals["t0"]), float(totals["t1"])
    mean_iteration_s = float(totals["busy"]) / max(float(totals["iterations"]), 1.0)
    bin_s, first, edges = _edges(t0, t1, mean_iteration_s, max_bins)
    roofline = isinstance(cost, Roofline) and not totals["unloaded"]
    sums = np.zeros((3, edges.size - 1))
    busy_s = flops = moved = 0.0
    columns = [*TELEMETRY_COLUMNS, *LOAD_COLUMNS]
    for offset in range(0, int(totals["rows"]), chunk_rows):
        part = telemetry.select(columns).slice(offset, chunk_rows).collect()
        a, b = part["start_s"].to_numpy(), part["end_s"].to_numpy()
        busy_rows = b - a
        sums[0] += _spread(a, b, busy_rows, edges)
        busy_s += float(busy_rows.sum())
        if roofline and isinstance(cost, Roofline):
            n = part["iterations"].to_numpy().astype(np.float64)
            work = cost.work(
                part["prefill_tokens"].to_numpy() * n,
                part["prefill_attn"].to_numpy(),
                part["decode_seqs"].to_numpy(),
                part["decode_ctx"].to_numpy(),
                n,
            )
            sums[1] += _spread(a, b, work.flops, edges)
            sums[2] += _spread(a, b, work.bytes, edges)
            flops += float(np.sum(work.flops))
            moved += float(np.sum(work.bytes))
    peaks = None
    if roofline and isinstance(cost, Roofline):
        peaks = (float(cost.gpu.flops), float(cost.gpu.mem_bw))
    return UtilisationSeries(
        basis="busy_only" if peaks is None else "roofline",
        start_s=t0,
        end_s=t1,
        bin_s=bin_s,
        bins_from_s=first,
        replicas=np.zeros(1, dtype=np.int64),
        busy=np.clip(sums[:1] / bin_s, 0.0, 1.0),
        mfu=None if peaks is None else sums[1:2] / (peaks[0] * bin_s),
        mbu=None if peaks is None else sums[2:3] / (peaks[1] * bin_s),
        busy_s=np.array([busy_s]),
        flops=None if peaks is None else np.array([flops]),
        bytes=None if peaks is None else np.array([moved]),
        peak_flops=None if peaks is None else peaks[0],
        peak_bw=None if peaks is None else peaks[1],
        cluster=False,
    )


def _has_load(rows: np.ndarray, load: np.ndarray) -> bool:
    """Whether the engine reported every row's load: a row that prefilled nothing
    must have decoded something."""
    if load.shape != (rows.shape[0], len(LOAD_COLUMNS)):
        return False
    decode_only = rows[:, _PREFILL] == 0
    return not bool((decode_only & (load[:, _DS] <= 0)).any())


def _bin_width(least_s: float, iteration_s: float) -> float:
    """Seconds per bin: at least ``least_s`` and :data:`MIN_BIN_ITERATIONS` mean
    iterations, rounded up to 1, 2 or 5 times a power of ten."""
    want = max(least_s, MIN_BIN_ITERATIONS * iteration_s, 1e-9)
    power = 10.0 ** math.floor(math.log10(want))
    for step in (1.0, 2.0, 5.0, 10.0):
        if step * power >= want * (1 - 1e-12):
            return step * power
    return 10.0 * power  # pragma: no cover - the loop always returns


def _spread(
    start: np.ndarray, end: np.ndarray, amount: np.ndarray, edges: np.ndarray
) -> np.ndarray:
    """``amount`` of each interval ``[start, end)`` (sorted, not overlapping) spread
    evenly over it, summed per bin between consecutive ``edges``.

    The cumulative amount is piecewise linear in time; its value at an edge is the
    sum over the rows before the one the edge falls in, plus that row's share up to
    the edge. Differenced, these are the bins' sums: exact, one pass over the rows
    (a cumulative sum) and a binary search per edge.
    """
    if start.size == 0:
        return np.zeros(edges.size - 1)
    before = np.concatenate([[0.0], np.cumsum(amount)])
    row = np.searchsorted(start, edges, side="right") - 1  # last row begun by the edge
    at = np.maximum(row, 0)
    length = end[at] - start[at]
    with np.errstate(over="ignore"):  # a subnormal length: the share clips to 1
        done = np.clip((edges - start[at]) / np.where(length > 0, length, 1.0), 0.0, 1.0)
    done[length <= 0] = 1.0  # an instant row is all done once begun
    cum = np.where(row >= 0, before[at] + amount[at] * done, 0.0)
    return np.diff(cum)
