"""Fit then sample: the generated workload matches the source (seeded known answers)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import stats

from burstlab.analyze.burstiness import arrival_stats, window_series
from burstlab.trace.schema import conform, validate
from burstlab.workload.model import WorkloadModel, fit

WINDOW = 1200.0


def varying_trace(seed: int = 0) -> pl.DataFrame:
    """Eight 20-min windows with different rates and Gamma shapes, two classes."""
    rng = np.random.default_rng(seed)
    rates = [2.0, 5.0, 1.0, 8.0, 3.0, 6.0, 0.5, 4.0]
    shapes = [0.3, 0.5, 1.0, 0.2, 0.7, 0.4, 1.5, 0.25]
    parts = []
    for k, (rate, shape) in enumerate(zip(rates, shapes, strict=True)):
        gaps = rng.gamma(shape, 1 / (rate * shape), int(rate * WINDOW * 2))
        t = k * WINDOW + np.cumsum(gaps)
        parts.append(t[t < (k + 1) * WINDOW])
    arrival = np.concatenate(parts)
    n = arrival.size
    gpt4 = rng.random(n) < 0.3
    inputs = np.maximum(rng.lognormal(6, 1, n), 1).astype(np.int32)
    outputs = np.maximum(0.2 * inputs + rng.lognormal(4, 0.5, n), 1).astype(np.int32)
    failed = rng.random(n) < np.where(gpt4, 0.05, 0.01)
    table = pl.DataFrame(
        {
            "arrival_s": arrival - arrival[0],
            "model": np.where(gpt4, "GPT-4", "ChatGPT"),
            "log_type": ["api"] * n,
            "session_id": pl.Series([None] * n, dtype=pl.String),
            "turn": pl.Series([None] * n, dtype=pl.Int32),
            "input_tokens": inputs,
            "output_tokens": np.where(failed, 0, outputs).astype(np.int32),
            "failed": failed,
            "elapsed_s": pl.Series([None] * n, dtype=pl.Float64),
        }
    )
    return conform(table).collect()


def test_fit_then_generate_matches_the_source() -> None:
    source = varying_trace()
    model = fit(source, window_s=WINDOW)
    work = model.sample(duration_s=model.duration_s, seed=1)
    validate(work)
    src, gen = source["arrival_s"].to_numpy(), work["arrival_s"].to_numpy()
    s_win, g_win = window_series(src, WINDOW), window_series(gen, WINDOW)
    n = min(len(s_win.rate_rps), len(g_win.rate_rps))
    expected, got = np.asarray(s_win.rate_rps[:n]), np.asarray(g_win.rate_rps[:n])
    assert np.median(np.abs(got - expected) / expected) <= 0.10
    assert arrival_stats(gen).cv == pytest.approx(arrival_stats(src).cv, rel=0.10)
    assert stats.ks_2samp(np.diff(src), np.diff(gen)).statistic <= 0.05
    assert stats.ks_2samp(source["input_tokens"], work["input_tokens"]).statistic <= 0.05
    ok_s = source.filter(~pl.col("failed"))["output_tokens"]
    ok_g = work.filter(~pl.col("failed"))["output_tokens"]
    assert stats.ks_2samp(ok_s, ok_g).statistic <= 0.05
    share = (work["model"].cast(pl.String) == "GPT-4").mean()
    assert share == pytest.approx(0.3, abs=0.02)
    assert work["failed"].mean() == pytest.approx(source["failed"].mean(), abs=0.005)


def test_rps_burstiness_cap_and_json_round_trip() -> None:
    model = fit(varying_trace(), window_s=WINDOW)
    again = WorkloadModel.model_validate_json(model.model_dump_json())
    assert again == model
    work = model.sample(duration_s=3600, rps=50, seed=2, length_cap=1000)
    arrival = work["arrival_s"].to_numpy()
    assert arrival.size / 3600 == pytest.approx(
        50 * np.mean([w.rate_rps for w in model.windows[:3]]) / model.mean_rps, rel=0.1
    )
    assert work["input_tokens"].max() <= 1000  # type: ignore[operator]
    calm = model.sample(duration_s=WINDOW, seed=3, shape=2.0)  # one window: one rate
    bursty = model.sample(duration_s=WINDOW, seed=3, shape=2.0, burstiness=4)
    assert arrival_stats(calm["arrival_s"].to_numpy()).gamma.shape == pytest.approx(2.0, rel=0.1)
    assert arrival_stats(bursty["arrival_s"].to_numpy()).gamma.shape == pytest.approx(0.5, rel=0.1)
    same = model.sample(duration_s=600, seed=5)
    assert same.equals(model.sample(duration_s=600, seed=5))


def test_simultaneous_arrivals_are_modelled() -> None:
    rng = np.random.default_rng(6)
    batches = np.cumsum(rng.gamma(0.5, 2.0, 3000))  # batch times, mean gap 1 s
    arrival = np.repeat(batches, rng.integers(1, 6, batches.size))  # 1-5 requests each
    n = arrival.size
    table = conform(
        pl.DataFrame(
            {
                "arrival_s": arrival - arrival[0],
                "model": ["m"] * n,
                "log_type": ["api"] * n,
                "session_id": pl.Series([None] * n, dtype=pl.String),
                "turn": pl.Series([None] * n, dtype=pl.Int32),
                "input_tokens": rng.integers(1, 100, n).astype(np.int32),
                "output_tokens": rng.integers(1, 100, n).astype(np.int32),
                "failed": [False] * n,
                "elapsed_s": pl.Series([None] * n, dtype=pl.Float64),
            }
        )
    ).collect()
    model = fit(table, window_s=600)
    assert model.zero_gap_share == pytest.approx(2 / 3, abs=0.02)  # mean batch 3: 2 of 3 gaps
    work = model.sample(seed=7)
    gaps = np.diff(work["arrival_s"].to_numpy())
    assert (gaps == 0).mean() == pytest.approx(model.zero_gap_share, abs=0.02)
    assert work.height == pytest.approx(n, rel=0.05)
