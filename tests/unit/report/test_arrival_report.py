"""The report's gap goodness-of-fit figure, per-class table and alpha/beta by time of day."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from burstlab.analyze.summary import analyze
from burstlab.report import analysis_figures
from burstlab.report.analysis import figures, render

pytestmark = pytest.mark.slow

DAY = 86_400.0
PNG = b"\x89PNG\r\n\x1a\n"
GAP_FIT = "Fitted Gamma and Weibull against the logged inter-arrival gaps"
SLOTS = "Gamma α (shape) and β (scale) per 20-minute slot of the day"


def table(arrival: np.ndarray, models: np.ndarray | None = None) -> pl.DataFrame:
    n = arrival.size
    return pl.DataFrame(
        {
            "arrival_s": arrival,
            "model": pl.Series(models if models is not None else ["ChatGPT"] * n).cast(
                pl.Categorical
            ),
            "log_type": ["conversation"] * n,
            "session_id": pl.Series([None] * n, dtype=pl.String),
            "turn": pl.Series([0] * n, dtype=pl.Int32),
            "input_tokens": np.full(n, 10, dtype=np.int32),
            "output_tokens": np.full(n, 20, dtype=np.int32),
            "failed": np.zeros(n, dtype=bool),
            "elapsed_s": pl.Series([None] * n, dtype=pl.Float64),
        }
    )


def gamma_seconds(shape: float, rate: float, span_s: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.gamma(shape, 1 / (rate * shape), int(rate * span_s * 1.2) + 10))
    return np.floor(t[t < span_s])


def test_multi_day_grid_table_gets_both_figures_and_tables(tmp_path: Path) -> None:
    arrival = gamma_seconds(0.5, 0.5, 2 * DAY, seed=0)
    models = np.where(np.arange(arrival.size) % 2500 == 0, "GPT-4", "ChatGPT")
    t = table(arrival, models)
    summary = analyze(t, None, origin=datetime(2024, 1, 1))  # a Monday
    made = dict(figures(t, summary))
    gap = next(c for c in made if c.startswith(GAP_FIT))
    assert "censored probability of each whole number of ticks" in gap
    slot = next(c for c in made if c.startswith(SLOTS))
    assert "work days (Mon-Fri)" in slot
    page = render(tmp_path / "report.html", [(t, summary)]).read_text()
    assert "Arrivals by model and log type" in page
    assert "ChatGPT / conversation" in page
    assert "fewer than 50 to fit" in page  # GPT-4: one request in 2,500
    assert page.count("<tr><td>") > 72
    assert "<td>23:40</td>" in page
    assert f"Gamma {summary.gap_check.ks_gamma:.4f}" in page


def test_short_continuous_table_has_log_bins_and_no_slot_figure(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    arrival = np.cumsum(rng.gamma(0.6, 1 / (0.5 * 0.6), 5_000))
    t = table(arrival)
    summary = analyze(t, None)
    assert summary.gap_check.histogram.kind == "log"
    assert analysis_figures.gap_fit(summary).startswith(PNG)
    assert analysis_figures.day_slots(summary) is None
    captions = [c for c, _ in figures(t, summary)]
    assert any(c.startswith(GAP_FIT) and "whole number of ticks" not in c for c in captions)
    assert not any(c.startswith(SLOTS) for c in captions)
    page = render(tmp_path / "report.html", [(t, summary)]).read_text()
    assert "Not tabulated: needs at least a day" in page


def test_unidentifiable_fits_are_named_in_the_caption() -> None:
    rng = np.random.default_rng(2)
    arrival = np.floor(np.cumsum(rng.gamma(0.5, 1 / (50 * 0.5), 20_000)))  # 50/s, whole s
    t = table(arrival)
    summary = analyze(t, None)
    assert summary.gap_check.ks_gamma is None
    caption = next(c for c, _ in figures(t, summary) if c.startswith(GAP_FIT))
    assert "Gamma not drawn: not identifiable" in caption
    assert analysis_figures.gap_fit(summary).startswith(PNG)
