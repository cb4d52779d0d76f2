"""A simulated run's results as one columnar table: ``requests.parquet``, one row per request.

``bench`` appends one JSON record per request as it ends (:mod:`burstlab.results.records`);
a simulation knows every request's fate at once, as arrays, so it writes them as one
Parquet table built column by column (no Python object per request or per token):
10M requests are a few hundred MB on disk instead of tens of GB of JSON.

Stored columns (:data:`STORED`): ``request_id`` (row ``i`` of the schedule), the
canonical columns (``arrival_s`` the intended and, for the simulated perfect client,
the actual send time; ``failed`` whether this run failed the request, as in the
records), ``outcome`` and ``error_kind``/``error_subkind``/``http_status``/
``error_text`` named as ``bench``'s records name them, ``first_s`` and ``end_s``,
``queue_s`` (first admission minus arrival), the metrics ``ttft_s``, ``tpot_s`` and
``e2e_s`` (:mod:`burstlab.results.metrics`' definitions), input and output tokens
achieved, ``preemptions``, ``max_gap_s`` (the longest gap between two of the
request's tokens) and, only when the run kept them, ``token_s``: every token's time
(seconds, a list of float64). Times are seconds from the run's start; null where
never reached.

:func:`result_table` turns the stored table into the result table every reader of a
run takes (the records' columns and every metric), so summaries, reports and
``analyze`` read a simulated run as they read a benchmark.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from burstlab.results.metrics import BY_NAME, METRICS, derive

#: The file in a run directory.
REQUESTS_FILE = "requests.parquet"
#: The list column of token times (seconds), present only when the run kept them.
TIMES_COLUMN = "token_s"


@dataclass(frozen=True, slots=True)
class Fate:
    """How one simulator outcome reads in a run's results: the record's ``outcome``
    (``ok`` or ``failed``), failure kind and subkind (as ``bench`` names them),
    the HTTP status a client would have seen (None: no response) and the error text."""

    outcome: str
    error_kind: str | None = None
    error_subkind: str | None = None
    http_status: int | None = None
    error_text: str | None = None


#: The stored columns (besides the optional ``token_s``) and their dtypes.
STORED: dict[str, pl.DataType] = {
    "request_id": pl.Int64(),
    "arrival_s": pl.Float64(),
    "model": pl.Categorical(),
    "log_type": pl.Enum(["conversation", "api"]),
    "session_id": pl.String(),
    "turn": pl.Int32(),
    "input_tokens": pl.Int32(),
    "output_tokens": pl.Int32(),
    "failed": pl.Boolean(),
    "outcome": pl.Categorical(),
    "error_kind": pl.Categorical(),
    "error_subkind": pl.Categorical(),
    "http_status": pl.Int32(),
    "error_text": pl.Categorical(),
    "first_s": pl.Float64(),
    "end_s": pl.Float64(),
    "queue_s": pl.Float64(),
    "ttft_s": pl.Float64(),
    "tpot_s": pl.Float64(),
    "e2e_s": pl.Float64(),
    "input_tokens_achieved": pl.Int32(),
    "output_tokens_achieved": pl.Int32(),
    "preemptions": pl.Int32(),
    "max_gap_s": pl.Float64(),
}
#: The metrics stored with every request (the rest are derived on reading).
STORED_METRICS = ("ttft_s", "tpot_s", "e2e_s")


def requests_table(
    schedule: pl.DataFrame,
    fates: Mapping[int, Fate],
    code: np.ndarray,
    *,
    first_s: np.ndarray,
    end_s: np.ndarray,
    admitted_s: np.ndarray,
    preemptions: np.ndarray,
    tokens: np.ndarray,
    max_gap_s: np.ndarray,
    token_lists: tuple[np.ndarray, np.ndarray] | None = None,
) -> pl.DataFrame:
    """The stored table of a simulation, built from arrays.

    ``schedule`` is the workload as run (row ``i`` is request ``i``); ``code`` every
    request's outcome code, read through ``fates``; the other arrays are per request
    (seconds, NaN where never reached). ``token_lists`` is ``(offsets, times)``:
    request ``i``'s token times are ``times[offsets[i]:offsets[i+1]]``.
    """
    n = schedule.height
    codes = pl.Series("code", np.asarray(code), dtype=pl.Int8)
    keys = list(fates)
    fate_columns = [
        codes.replace_strict(
            keys, [getattr(fates[k], name) for k in keys], return_dtype=dtype
        ).alias(name)
        for name, dtype in _FATE_COLUMNS.items()
    ]
    canonical = [c for c in ("model", "log_type", "session_id", "turn") if c in schedule.columns]
    frame = pl.DataFrame(
        [
            pl.Series("request_id", np.arange(n, dtype=np.int64)),
            schedule["arrival_s"],
            *(schedule[c] for c in canonical),
            schedule["input_tokens"],
            schedule["output_tokens"],
            *fate_columns,
            _seconds("first_s", first_s),
            _seconds("end_s", end_s),
            _seconds("queue_s", np.asarray(admitted_s) - schedule["arrival_s"].to_numpy()),
            pl.Series("tokens", np.asarray(tokens), dtype=pl.Int32),
            pl.Series("preemptions", np.asarray(preemptions), dtype=pl.Int32),
            _seconds("max_gap_s", max_gap_s),
        ]
    )
    ok = pl.col("outcome") == "ok"
    frame = frame.with_columns(
        (~ok).alias("failed"),
        pl.when(ok).then(pl.col("input_tokens")).alias("input_tokens_achieved"),
        pl.when(ok | (pl.col("tokens") > 0)).then(pl.col("tokens")).alias("output_tokens_achieved"),
    )
    metrics = _perfect_client(frame).select(BY_NAME[m].expr.alias(m) for m in STORED_METRICS)
    frame = pl.concat([frame, metrics], how="horizontal")
    stored = frame.select(pl.col(c).cast(t) for c, t in STORED.items() if c in frame.columns)
    if token_lists is not None:
        stored = stored.with_columns(token_column(*token_lists, n))
    return stored


_FATE_COLUMNS: dict[str, pl.DataType] = {
    "outcome": pl.Categorical(),
    "error_kind": pl.Categorical(),
    "error_subkind": pl.Categorical(),
    "http_status": pl.Int32(),
    "error_text": pl.Categorical(),
}


def _seconds(name: str, values: np.ndarray) -> pl.Series:
    """A float column of seconds, NaN (never reached) as null."""
    return pl.Series(name, np.asarray(values, dtype=np.float64), nan_to_null=True)


def token_column(offsets: np.ndarray, times: np.ndarray, n: int) -> pl.Series:
    """Token times as a list column: row ``i`` holds ``times[offsets[i]:offsets[i+1]]``.
    One slice per row of the whole array (no Python object per request or token)."""
    offsets = np.asarray(offsets, dtype=np.int64)[: n + 1]
    flat = pl.Series(TIMES_COLUMN, np.asarray(times, dtype=np.float64)).implode()
    bounds = pl.DataFrame({"lo": offsets[:-1], "len": np.diff(offsets)})
    sliced = bounds.select(pl.lit(flat).list.slice(pl.col("lo"), pl.col("len")).alias(TIMES_COLUMN))
    return sliced.to_series()


def _perfect_client(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with the client's columns of a simulation: every request dispatched
    and sent at its intended time, nothing queued for a connection, no chunk list
    unless token times were kept (then one chunk per token)."""
    arrival = pl.col("arrival_s")
    if TIMES_COLUMN in frame.columns:
        chunks = pl.col(TIMES_COLUMN)
        counts = pl.col(TIMES_COLUMN).list.eval(pl.lit(1, dtype=pl.Int32))
    else:
        chunks = pl.lit(None, dtype=pl.List(pl.Float64))
        counts = pl.lit(None, dtype=pl.List(pl.Int32))
    ok = pl.col("outcome") == "ok"
    return frame.with_columns(
        arrival.alias("dispatched_s"),
        arrival.alias("sent_s"),
        pl.lit(0.0).alias("conn_queued_s"),
        chunks.alias("chunk_s"),
        counts.alias("chunk_tokens"),
        pl.lit(None, dtype=pl.Float64).alias("retry_after_s"),
        pl.lit(None, dtype=pl.String).alias("location"),
        pl.lit(0, dtype=pl.Int32).alias("worker"),
        pl.lit("", dtype=pl.String).alias("run_id"),
        pl.when(ok).then(pl.lit("usage")).alias("tokens_source"),
        pl.when(ok).then(pl.lit("length")).alias("finish_reason"),
        pl.lit(False).alias("done_missing"),
        pl.lit(0, dtype=pl.Int32).alias("coalesced_events"),
    )


def result_table(stored: pl.DataFrame) -> pl.DataFrame:
    """A stored table as a run's result table: the records' columns (the simulated
    client's sends at the intended times) and every metric of the metric table,
    sorted by intended time like :func:`~burstlab.results.records.load_records`'s."""
    table = derive(_perfect_client(stored))
    if table["arrival_s"].is_sorted():  # a simulation's rows are; sorting would copy them all
        return table
    return table.sort("arrival_s", "request_id", maintain_order=True)


#: The columns a run's summary (:func:`~burstlab.results.summary.summarize`), its burst
#: view and ``vllm.json`` read of a result table.
SUMMARY_COLUMNS: tuple[str, ...] = (
    "arrival_s",
    "input_tokens",
    "output_tokens",
    "outcome",
    "error_kind",
    "error_subkind",
    "dispatched_s",
    "sent_s",
    "conn_queued_s",
    "first_s",
    "end_s",
    "chunk_s",
    "chunk_tokens",
    "input_tokens_achieved",
    "output_tokens_achieved",
    *(m.name for m in METRICS),
)


def summary_view(table: pl.DataFrame) -> pl.DataFrame:
    """The :data:`SUMMARY_COLUMNS` of a result table: what summarising reads, no more.
    A summary filters its table several times, and each filter copies every column:
    for millions of requests the narrow view is the difference between one and
    several gigabytes."""
    return table.select(SUMMARY_COLUMNS)


def read_requests(path: str | Path, *, token_times: bool = True) -> pl.DataFrame:
    """Read ``requests.parquet`` as a result table (see :func:`result_table`);
    ``token_times=False`` leaves the token-time list out (figures and summaries
    need no more than the stored per-request metrics)."""
    frame = pl.read_parquet(path)
    if not token_times and TIMES_COLUMN in frame.columns:
        frame = frame.drop(TIMES_COLUMN)
    return result_table(frame)


def has_token_times(path: str | Path) -> bool:
    """Whether a stored table kept every token's time (without reading it)."""
    return TIMES_COLUMN in pl.read_parquet_schema(path)
