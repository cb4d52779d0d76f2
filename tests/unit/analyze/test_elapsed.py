"""Elapsed-time fits recover the lines they were drawn from."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from burstlab.analyze.elapsed import elapsed


def table(
    n: int = 20_000, seed: int = 0, *, noise: float = 0.0, constant_input: bool = False
) -> pl.DataFrame:
    """Two models, elapsed = 0.5 + (0.02 or 0.08) * out + 0.001 * in (+ noise); every
    tenth row (all of model "slow") failed with no response tokens."""
    rng = np.random.default_rng(seed)
    model = np.where(np.arange(n) % 2 == 0, "fast", "slow")
    inp = np.full(n, 100) if constant_input else rng.integers(10, 4000, n)
    out = rng.integers(1, 1000, n)
    per_out = np.where(model == "fast", 0.02, 0.08)
    e = 0.5 + per_out * out + 0.001 * inp + rng.normal(0, noise, n)
    failed = np.arange(n) % 10 == 9
    return pl.DataFrame(
        {
            "model": pl.Series(model).cast(pl.Categorical),
            "input_tokens": inp.astype(np.int32),
            "output_tokens": np.where(failed, 0, out).astype(np.int32),
            "failed": failed,
            "elapsed_s": e,
        }
    )


def test_exact_lines_per_model() -> None:
    result = elapsed(table())
    assert result is not None
    assert [m.model for m in result.models] == ["fast", "slow"]
    assert result.left_out == 2000
    for m, per_out, rows in zip(result.models, (0.02, 0.08), (10_000, 8000), strict=True):
        assert m.requests == rows
        line = m.with_input
        assert line is not None
        assert line.intercept_s == pytest.approx(0.5, abs=1e-6)
        assert line.per_output_token_s == pytest.approx(per_out, rel=1e-9)
        assert line.per_input_token_s == pytest.approx(0.001, rel=1e-9)
        assert line.r_squared == pytest.approx(1.0)
        only = m.output_only
        assert only is not None
        assert only.per_output_token_s == pytest.approx(per_out, rel=0.01)
        assert only.intercept_s == pytest.approx(0.5 + 0.001 * 2004.5, rel=0.05)
        assert only.r_squared < 1.0


def test_noisy_slope_and_r_squared() -> None:
    result = elapsed(table(noise=5.0, seed=1))
    assert result is not None
    slow = result.models[1].with_input
    assert slow is not None
    assert slow.per_output_token_s == pytest.approx(0.08, rel=0.02)
    # R^2 = var(signal) / (var(signal) + 25)
    signal = 0.08**2 * (999**2 - 1) / 12 + 0.001**2 * (3990**2 - 1) / 12
    assert slow.r_squared == pytest.approx(signal / (signal + 25), abs=0.01)
    per_token = result.models[0].seconds_per_output_token
    assert per_token.p50 > 0.02


def test_no_elapsed_times() -> None:
    t = table(100)
    assert elapsed(t.with_columns(elapsed_s=pl.lit(None, pl.Float64))) is None
    assert elapsed(t.drop("elapsed_s")) is None


def test_constant_input_has_no_two_column_fit() -> None:
    result = elapsed(table(1000, constant_input=True))
    assert result is not None
    assert result.models[0].with_input is None
    line = result.models[0].output_only
    assert line is not None
    assert line.per_output_token_s == pytest.approx(0.02)
    assert line.intercept_s == pytest.approx(0.6)
