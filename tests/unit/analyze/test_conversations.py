"""Turns histogram, time between turns and multi-turn durations on known sessions."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from burstlab.analyze import conversations as conv
from burstlab.analyze.conversations import conversations, log_histogram


def sessions_table(turns: list[int], gap_s: float = 10.0) -> pl.DataFrame:
    """Session i has turns[i] turns, ``gap_s`` apart, starting at 1000 * i."""
    sid = np.repeat(np.arange(len(turns)), turns)
    turn = np.concatenate([np.arange(k) for k in turns])
    arrival = sid * 1000.0 + turn * gap_s
    order = np.argsort(arrival, kind="stable")
    return pl.DataFrame(
        {
            "arrival_s": arrival[order],
            "session_id": [f"s{i}" for i in sid[order]],
            "turn": turn[order].astype(np.int32),
            "input_tokens": (100 * (turn[order] + 1)).astype(np.int32),
        }
    )


def test_turns_gaps_and_multi_turn_durations() -> None:
    result = conversations(sessions_table([1, 1, 1, 2, 2, 3, 5]))
    assert result is not None
    assert result.turns_histogram.turns == [1, 2, 3, 4, 5]
    assert result.turns_histogram.sessions == [3, 2, 1, 0, 1]
    assert result.turns_histogram.more == 0
    assert result.multi_turn_sessions == 4
    d = result.duration_multi_turn_s
    assert d is not None
    assert (d.p50, d.mean) == pytest.approx((15.0, (10 + 10 + 20 + 40) / 4))
    assert result.duration_median_s == 10.0  # every session, one-turn ones at 0 s
    g = result.gap_between_turns_s
    assert g is not None
    assert (g.p5, g.p50, g.p95, g.mean) == pytest.approx((10.0, 10.0, 10.0, 10.0))
    assert result.gap_between_turns_histogram is not None
    assert sum(result.gap_between_turns_histogram.counts) == 1 + 1 + 2 + 4
    assert result.gaps_between_turns == 8
    assert result.input_median_by_turn == [100.0, 200.0, 300.0, 400.0, 500.0]


def test_long_sessions_are_counted_as_more(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conv, "MAX_TURNS_LISTED", 3)
    result = conversations(sessions_table([1, 2, 4, 6]))
    assert result is not None
    assert result.turns_histogram.turns == [1, 2, 3]
    assert result.turns_histogram.sessions == [1, 1, 0]
    assert result.turns_histogram.more == 2


def test_single_turn_sessions_only() -> None:
    result = conversations(sessions_table([1, 1, 1]))
    assert result is not None
    assert result.multi_turn_sessions == 0
    assert result.duration_multi_turn_s is None
    assert result.duration_multi_turn_histogram is None
    assert result.gap_between_turns_s is None


def test_log_histogram() -> None:
    h = log_histogram(np.array([0.0, 0.0, 1.0, 10.0, 100.0]), bins=2)
    assert h is not None
    assert h.edges == pytest.approx([1.0, 10.0, 100.0])
    assert h.counts == [1, 2]
    assert h.zeros == 2
    one = log_histogram(np.array([5.0, 5.0]))
    assert one is not None
    assert one.counts == [2]
    assert log_histogram(np.zeros(3)) is None
