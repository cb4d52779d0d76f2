"""Conversation structure: turns per session, time between turns, duration, input growth.

Time between turns is arrival to arrival of consecutive requests of one session
(the previous response's time plus the user's think time). Durations are first
to last arrival of a session, so they are reported for multi-turn sessions
(a one-turn session lasts 0 s by construction); ``duration_median_s`` keeps
the median over every session.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from burstlab.analyze.calendar import Quantiles, quantiles

MAX_TURN_PROFILE = 10
#: The turns histogram lists sessions by turn count up to this many turns; ``more`` the rest.
MAX_TURNS_LISTED = 50


class TurnCounts(BaseModel):
    """Sessions by number of turns: ``sessions[i]`` sessions have ``turns[i]`` turns;
    ``more`` sessions have more than the last listed."""

    model_config = ConfigDict(extra="forbid")

    turns: list[int]
    sessions: list[int]
    more: int


class LogHistogram(BaseModel):
    """Counts in log-spaced bins (``edges`` in seconds, one more than ``counts``);
    ``zeros`` values were exactly 0 and sit in no bin."""

    model_config = ConfigDict(extra="forbid")

    edges: list[float]
    counts: list[int]
    zeros: int


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
    turns_histogram: TurnCounts
    multi_turn_sessions: int
    gaps_between_turns: int
    gap_between_turns_s: Quantiles | None
    gap_between_turns_histogram: LogHistogram | None
    duration_multi_turn_s: Quantiles | None
    duration_multi_turn_histogram: LogHistogram | None


def log_histogram(x: np.ndarray, *, bins: int = 40) -> LogHistogram | None:
    """``x`` (non-negative) in ``bins`` log-spaced bins from its smallest positive value
    to its largest; None when nothing is positive."""
    positive = x[x > 0]
    if positive.size == 0:
        return None
    lo, hi = float(positive.min()), float(positive.max())
    edges = np.geomspace(lo, hi, bins + 1) if hi > lo else np.array([lo / 1.5, lo * 1.5])
    counts, _ = np.histogram(positive, bins=edges)
    return LogHistogram(
        edges=[float(e) for e in edges],
        counts=[int(c) for c in counts],
        zeros=int((x == 0).sum()),
    )


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
    n = per["n"].to_numpy()
    listed = np.bincount(np.minimum(n, MAX_TURNS_LISTED + 1))[1 : MAX_TURNS_LISTED + 1]
    more = int((n > MAX_TURNS_LISTED).sum())
    multi = per.filter(pl.col("n") > 1)["duration"].to_numpy()
    gap = gaps.to_numpy()
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
        turns_histogram=TurnCounts(
            turns=list(range(1, listed.size + 1)),
            sessions=[int(c) for c in listed],
            more=more,
        ),
        multi_turn_sessions=int(multi.size),
        gaps_between_turns=int(gap.size),
        gap_between_turns_s=quantiles(gap),
        gap_between_turns_histogram=log_histogram(gap),
        duration_multi_turn_s=quantiles(multi),
        duration_multi_turn_histogram=log_histogram(multi),
    )
