"""The analysis report's figures and sections appear exactly when their data exist."""

from __future__ import annotations

import base64
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from burstlab.analyze.summary import analyze
from burstlab.report import analysis_figures
from burstlab.report.analysis import figures, render

DAY = 86_400.0
PNG = b"\x89PNG\r\n\x1a\n"


def trace(days: float, *, sessions: bool, elapsed: bool, seed: int = 0) -> pl.DataFrame:
    """Poisson arrivals at 0.05/s, two models; optionally sessions of 1-4 turns and
    elapsed = 1 + 0.03 * output tokens."""
    rng = np.random.default_rng(seed)
    arrival = np.sort(rng.uniform(0, days * DAY, int(0.05 * days * DAY)))
    n = arrival.size
    out = rng.integers(1, 500, n).astype(np.int32)
    return pl.DataFrame(
        {
            "arrival_s": arrival,
            "model": pl.Series(np.where(np.arange(n) % 3 == 0, "GPT-4", "ChatGPT")).cast(
                pl.Categorical
            ),
            "log_type": ["conversation"] * n,
            "session_id": pl.Series(
                [f"s{i}" for i in rng.integers(0, n // 3, n)] if sessions else [None] * n,
                dtype=pl.String,
            ),
            "turn": pl.Series([0] * n, dtype=pl.Int32),
            "input_tokens": rng.integers(1, 2000, n).astype(np.int32),
            "output_tokens": out,
            "failed": np.zeros(n, dtype=bool),
            "elapsed_s": 1.0 + 0.03 * out if elapsed else pl.Series([None] * n, dtype=pl.Float64),
        }
    )


def captions(table: pl.DataFrame, origin: datetime | None) -> dict[str, str]:
    return dict(figures(table, analyze(table, None, origin=origin)))


@pytest.mark.slow
def test_every_new_figure_on_a_rich_table() -> None:
    table = trace(8, sessions=True, elapsed=True)
    made = captions(table, datetime(2024, 1, 1))
    wanted = [
        "Mean requests per hour by weekday and hour of day",
        "Weekly profile",
        "Request rate within each hour of day",
        "Request and response tokens per hour",
        "Request vs response: median, mean and 90% band",
        "Conversations: turns per session, time between turns",
        "Elapsed time recorded by the source",
    ]
    for start in wanted:
        (uri,) = [u for c, u in made.items() if c.startswith(start)]
        assert base64.b64decode(uri.split(",", 1)[1]).startswith(PNG)


@pytest.mark.slow
def test_figures_left_out_without_their_data() -> None:
    made = captions(trace(0.5, sessions=False, elapsed=False), None)
    absent = (
        "Mean requests per hour",
        "Weekly profile",
        "Request rate within",
        "Conversations",
        "Elapsed",
    )
    assert not [c for c in made if c.startswith(absent)]
    assert any(c.startswith("Request and response tokens per hour") for c in made)


def test_render_shows_calendar_periods_and_elapsed(tmp_path: Path) -> None:
    table = trace(8, sessions=True, elapsed=True)
    summary = analyze(table, None, origin=datetime(2024, 1, 1))
    html = render(tmp_path / "r.html", [(table, summary)], with_plots=False).read_text()
    assert "Wall clock: arrival 0 s is 2024-01-01T00:00:00 (from --origin)" in html
    assert "Busiest weekday-hour" in html
    assert "30.00 ms &times; response" in html  # elapsed = 1 s + 30 ms per response token
    assert "multi-turn sessions" in html
    bare = trace(0.5, sessions=False, elapsed=False)
    html = render(tmp_path / "b.html", [(bare, analyze(bare, None))], with_plots=False).read_text()
    assert "pass <code>--origin</code>" in html
    assert "No elapsed times in this table" in html


def test_relation_figure_skips_empty_classes() -> None:
    table = trace(0.2, sessions=False, elapsed=False)
    summary = analyze(table, None)
    assert analysis_figures.relation(summary) is not None
    empty = summary.model_copy(update={"lengths": []})
    assert analysis_figures.relation(empty) is None
