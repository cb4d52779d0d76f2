"""bench's times against the server's own account of each request (llama.cpp's ``timings``).

For every ok request that carries the server's timings:

- ``decode_gap_ms``: bench's decode time (last token event minus first, on the
  client) minus the server's (``predicted_ms`` minus the part of it before the
  first streamed token). Both clocks span the same tokens, so the gap is only the
  difference in delivery delay of the first and last chunks: well under a
  millisecond on loopback.
- ``ttft_gap_ms``: bench's TTFT (first token event minus the moment the request's
  headers were sent) minus the server's time from a slot taking the prompt to the
  first streamed token (``server_first_ms``, else ``prompt_ms``). The server's clock
  starts when a slot takes the request, so the gap holds the network and parsing
  on both sides **and** any wait for a slot (llama-server's deferred queue, or for
  its loop to finish the batch in progress). ``idle`` marks requests sent while no
  other request of the run was in flight: for them the gap is the overhead alone.

All gaps in milliseconds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl


def timing_gaps(table: pl.DataFrame) -> pl.DataFrame:
    """Per request (ok, with server timings): ``request_id``, ``ttft_ms`` and
    ``decode_ms`` as bench measured them, the server's ``server_ttft_ms`` and
    ``server_decode_ms``, the two gaps, and ``idle``."""
    need = {"server_prompt_ms", "server_predicted_ms", "sent_s", "first_s", "end_s"}
    if not need <= set(table.columns):
        return pl.DataFrame()
    rows = table.filter(
        (pl.col("outcome") == "ok")
        & pl.col("server_prompt_ms").is_not_null()
        & pl.col("server_predicted_ms").is_not_null()
        & pl.col("first_s").is_not_null()
        & pl.col("sent_s").is_not_null()
    )
    first = (
        pl.col("server_first_ms")
        if "server_first_ms" in table.columns
        else pl.lit(None, dtype=pl.Float64)
    )
    server_first = pl.coalesce(first, pl.col("server_prompt_ms"))
    out = rows.select(
        "request_id",
        "sent_s",
        "end_s",
        ((pl.col("first_s") - pl.col("sent_s")) * 1e3).alias("ttft_ms"),
        ((pl.col("end_s") - pl.col("first_s")) * 1e3).alias("decode_ms"),
        server_first.alias("server_ttft_ms"),
        (pl.col("server_predicted_ms") - (server_first - pl.col("server_prompt_ms"))).alias(
            "server_decode_ms"
        ),
    ).with_columns(
        (pl.col("ttft_ms") - pl.col("server_ttft_ms")).alias("ttft_gap_ms"),
        (pl.col("decode_ms") - pl.col("server_decode_ms")).alias("decode_gap_ms"),
    )
    return out.with_columns(pl.Series("idle", _idle(table, out["sent_s"].to_numpy())))


def _idle(table: pl.DataFrame, sent: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Whether no other request of the run was in flight at each of ``sent``."""
    spans = table.filter(pl.col("sent_s").is_not_null())
    starts = np.sort(spans["sent_s"].to_numpy())
    ends = spans["end_s"].fill_null(np.inf).to_numpy()
    ends = np.sort(ends)
    # In flight at t: sent before t and not yet ended; the request itself is sent at t.
    before = np.searchsorted(starts, sent, side="left")
    ended = np.searchsorted(ends, sent, side="right")
    result: np.ndarray[Any, Any] = (before - ended) <= 0
    return result


def gap_summary(gaps: pl.DataFrame) -> dict[str, Any]:
    """Median and p99 of each gap and of its absolute value (ms), over every compared
    request and over the idle ones, with their counts."""

    def stats(values: pl.Series) -> dict[str, float | int | None]:
        arr = values.drop_nulls().to_numpy()
        if arr.size == 0:
            return {"n": 0, "median": None, "p99": None, "abs_median": None, "abs_p99": None}
        return {
            "n": int(arr.size),
            "median": float(np.median(arr)),
            "p99": float(np.quantile(arr, 0.99)),
            "abs_median": float(np.median(np.abs(arr))),
            "abs_p99": float(np.quantile(np.abs(arr), 0.99)),
        }

    if gaps.is_empty():
        return {"compared": 0}
    idle = gaps.filter(pl.col("idle"))
    return {
        "compared": gaps.height,
        "ttft_gap_ms": stats(gaps["ttft_gap_ms"]),
        "decode_gap_ms": stats(gaps["decode_gap_ms"]),
        "idle_ttft_gap_ms": stats(idle["ttft_gap_ms"]),
        "idle_decode_gap_ms": stats(idle["decode_gap_ms"]),
    }
