"""Conversation structure: turns per session, think time, duration, input growth by turn."""

from __future__ import annotations

import polars as pl
from pydantic import BaseModel, ConfigDict

MAX_TURN_PROFILE = 10


class Conversations(BaseModel):
    """Sessions in a table; times in seconds, lengths in tokens."""

    model_config = ConfigDict(extra="forbid")

    sessions: int
    single_turn_share: float
    turns_median: float
    turns_p75: float
    turns_max: int
    gap_median_s: float | None
    gap_p90_s: float | None
    duration_median_s: float
    input_median_by_turn: list[float]


def conversations(table: pl.DataFrame) -> Conversations | None:
    """Session statistics, or None when the table has no sessions."""
    rows = table.filter(pl.col("session_id").is_not_null())
    if rows.height == 0:
        return None
    per = rows.group_by("session_id").agg(
        n=pl.len(), duration=pl.col("arrival_s").max() - pl.col("arrival_s").min()
    )
    gaps = rows.select(pl.col("arrival_s").diff().over("session_id").alias("g"))["g"].drop_nulls()
    by_turn = (
        rows.filter(pl.col("turn") < MAX_TURN_PROFILE)
        .group_by("turn")
        .agg(pl.col("input_tokens").median())
        .sort("turn")
    )
    return Conversations(
        sessions=per.height,
        single_turn_share=float((per["n"] == 1).mean() or 0.0),  # type: ignore[arg-type]
        turns_median=float(per["n"].median() or 0.0),  # type: ignore[arg-type]
        turns_p75=float(per["n"].quantile(0.75) or 0.0),
        turns_max=int(per["n"].max() or 0),  # type: ignore[arg-type]
        gap_median_s=float(gaps.median()) if gaps.len() else None,  # type: ignore[arg-type]
        gap_p90_s=float(gaps.quantile(0.9) or 0.0) if gaps.len() else None,
        duration_median_s=float(per["duration"].median() or 0.0),  # type: ignore[arg-type]
        input_median_by_turn=[float(v) for v in by_turn["input_tokens"].to_list()],
    )
