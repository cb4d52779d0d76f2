"""Conversation sessions in workloads: fitted structure, sampled turns, chat history.

A session's turns follow its first request by think times (the gap from one
turn's intended send time to the next). ``with_history`` turns each request
into what a chat client really sends: its own tokens plus every earlier turn's
request and response, so prefix caching is exercised as in production.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

MAX_TURNS = 100
THINK_POINTS = 101


class SessionModel(BaseModel):
    """Turns per session (``turns_pmf[i]`` = P(i + 1 turns)) and think-time quantiles (s)."""

    model_config = ConfigDict(extra="forbid")

    turns_pmf: list[float]
    think_quantiles: list[float]

    @property
    def mean_turns(self) -> float:
        return float(np.dot(np.arange(1, len(self.turns_pmf) + 1), self.turns_pmf))

    def sample_turns(self, rng: np.random.Generator, n: int) -> np.ndarray:
        pmf = np.asarray(self.turns_pmf)
        return rng.choice(np.arange(1, pmf.size + 1), size=n, p=pmf / pmf.sum())

    def sample_think(self, rng: np.random.Generator, n: int) -> np.ndarray:
        q = np.asarray(self.think_quantiles)
        out: np.ndarray = np.interp(rng.random(n), np.linspace(0, 1, q.size), q)
        return out


def fit_sessions(rows: pl.DataFrame) -> SessionModel | None:
    """Session structure of the rows of one class, or None if they have no sessions."""
    rows = rows.filter(pl.col("session_id").is_not_null())
    if rows.height == 0:
        return None
    turns = rows.group_by("session_id").len()["len"].to_numpy().clip(1, MAX_TURNS)
    pmf = np.bincount(turns, minlength=turns.max() + 1)[1:] / turns.size
    gaps = (
        rows.select(pl.col("arrival_s").diff().over("session_id"))["arrival_s"]
        .drop_nulls()
        .to_numpy()
    )
    think = np.quantile(gaps, np.linspace(0, 1, THINK_POINTS)) if gaps.size else np.zeros(2)
    return SessionModel(turns_pmf=pmf.tolist(), think_quantiles=think.tolist())


def expand_sessions(
    rng: np.random.Generator, starts: np.ndarray, model: SessionModel
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turns of sessions starting at ``starts``: (arrival_s, session index, turn), unsorted."""
    turns = model.sample_turns(rng, starts.size)
    session = np.repeat(np.arange(starts.size), turns)
    first = np.cumsum(turns) - turns
    turn = np.arange(session.size) - np.repeat(first, turns)
    think = np.where(turn > 0, model.sample_think(rng, session.size), 0.0)
    elapsed = np.cumsum(think)
    elapsed -= np.repeat(elapsed[first], turns)
    return starts[session] + elapsed, session, turn


def with_history(table: pl.DataFrame) -> pl.DataFrame:
    """Each session turn's input grows by all earlier turns' input and output tokens
    (ordered by ``turn``); requests outside sessions are unchanged. Capped at int32."""
    own = pl.col("input_tokens").cast(pl.Int64)
    earlier = (
        (own + pl.col("output_tokens").cast(pl.Int64))
        .cum_sum()
        .shift(1, fill_value=0)
        .over("session_id", order_by="turn")
    )
    grown = pl.when(pl.col("session_id").is_not_null()).then(own + earlier).otherwise(own)
    return table.with_columns(
        grown.clip(upper_bound=2**31 - 1).cast(pl.Int32).alias("input_tokens")
    )
