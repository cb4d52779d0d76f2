"""Sessions: fitted turn counts and think times come back out; history grows inputs."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from burstlab.trace.schema import conform, validate
from burstlab.workload.model import fit
from burstlab.workload.sessions import with_history


def conversational(seed: int = 0, sessions: int = 4000) -> pl.DataFrame:
    """API requests (Poisson) plus sessions of 1-6 turns with ~30 s think times."""
    rng = np.random.default_rng(seed)
    span = 4 * 3600.0
    api = np.sort(rng.uniform(0, span, 20_000))
    starts = np.sort(rng.uniform(0, span - 600, sessions))
    turns = rng.integers(1, 7, sessions)
    sid = np.repeat(np.arange(sessions), turns)
    first = np.cumsum(turns) - turns
    turn = np.arange(sid.size) - np.repeat(first, turns)
    think = np.where(turn > 0, rng.exponential(30.0, sid.size), 0.0)
    elapsed = np.cumsum(think)
    elapsed -= np.repeat(elapsed[first], turns)
    conv = starts[sid] + elapsed
    n_api, n_conv = api.size, conv.size
    table = pl.DataFrame(
        {
            "arrival_s": np.concatenate([api, conv]),
            "model": ["ChatGPT"] * (n_api + n_conv),
            "log_type": ["api"] * n_api + ["conversation"] * n_conv,
            "session_id": [None] * n_api + [f"c{i}" for i in sid],
            "turn": pl.Series([None] * n_api + turn.tolist(), dtype=pl.Int32),
            "input_tokens": rng.integers(10, 500, n_api + n_conv).astype(np.int32),
            "output_tokens": rng.integers(10, 300, n_api + n_conv).astype(np.int32),
            "failed": [False] * (n_api + n_conv),
            "elapsed_s": pl.Series([None] * (n_api + n_conv), dtype=pl.Float64),
        }
    ).sort("arrival_s", maintain_order=True)
    return conform(table).collect()


@pytest.mark.slow
def test_sessions_fitted_and_sampled() -> None:
    source = conversational()
    model = fit(source, window_s=1200)
    conv = next(c for c in model.classes if c.log_type == "conversation")
    assert conv.sessions is not None
    assert conv.sessions.mean_turns == pytest.approx(3.5, rel=0.05)
    work = model.sample(seed=4)
    validate(work)
    assert work.height == pytest.approx(source.height, rel=0.05)
    sampled = work.filter(pl.col("session_id").is_not_null())
    per = sampled.group_by("session_id").len()["len"]
    assert per.mean() == pytest.approx(3.5, rel=0.1)
    think = sampled.select(pl.col("arrival_s").diff().over("session_id", order_by="turn"))
    assert think["arrival_s"].drop_nulls().median() == pytest.approx(30 * np.log(2), rel=0.15)
    share = (work["log_type"] == "conversation").mean()
    expected = (source["log_type"] == "conversation").mean()
    assert share == pytest.approx(expected, abs=0.03)
    first_turns = sampled.filter(pl.col("turn") == 0).height
    assert first_turns == sampled["session_id"].n_unique()


def test_history_adds_earlier_turns() -> None:
    table = pl.DataFrame(
        {
            "session_id": ["a", None, "a", "a", "b"],
            "turn": pl.Series([0, None, 1, 2, 0], dtype=pl.Int32),
            "input_tokens": pl.Series([10, 7, 20, 30, 5], dtype=pl.Int32),
            "output_tokens": pl.Series([1, 1, 2, 3, 4], dtype=pl.Int32),
        }
    )
    # turn 2: 30 own + (10 + 1) + (20 + 2) from turns 0 and 1
    assert with_history(table)["input_tokens"].to_list() == [10, 7, 31, 63, 5]
