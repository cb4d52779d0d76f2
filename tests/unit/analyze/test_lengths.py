"""Length fits recover known answers from seeded samples."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from burstlab.analyze.lengths import (
    bimodality_coefficient,
    fit_lognormal,
    fit_zipf,
    length_fit,
    lengths,
    relation,
)


@pytest.mark.parametrize("exponent", [1.8, 2.5])
def test_zipf_exponent_within_0_05(exponent: float) -> None:
    x = np.random.default_rng(5).zipf(exponent, 50_000)
    fit = fit_zipf(x)
    assert fit is not None
    assert fit.exponent == pytest.approx(exponent, abs=0.05)
    assert fit.ks < 0.02


def test_lognormal_recovered_and_named_best() -> None:
    x = np.maximum(np.round(np.random.default_rng(6).lognormal(6.0, 0.8, 50_000)), 1)
    fit = fit_lognormal(x)
    assert fit is not None
    assert fit.mu == pytest.approx(6.0, abs=0.02)
    assert fit.sigma == pytest.approx(0.8, abs=0.02)
    assert length_fit(x).best == "lognormal"


def test_bimodality_flag() -> None:
    rng = np.random.default_rng(7)
    two = np.concatenate([rng.lognormal(3, 0.3, 5000), rng.lognormal(7, 0.3, 5000)])
    one = rng.lognormal(5, 0.5, 10_000)
    assert length_fit(np.round(two)).bimodal
    assert not length_fit(np.round(one)).bimodal
    assert bimodality_coefficient(np.array([1.0, 2.0])) is None


def test_regression_slope_within_2_percent() -> None:
    rng = np.random.default_rng(8)
    inp = rng.integers(10, 4000, 20_000)
    out = 0.3 * inp + 20 + rng.normal(0, 30, inp.size)
    rel = relation(inp, out)
    assert rel.slope == pytest.approx(0.3, rel=0.02)
    assert rel.intercept == pytest.approx(20, abs=3)
    assert rel.r_squared > 0.9
    assert len(rel.bin_input) == len(rel.bin_median_output) > 5


def test_lengths_per_class_skips_failed_responses() -> None:
    rng = np.random.default_rng(9)
    n = 2000
    table = pl.DataFrame(
        {
            "model": pl.Series(["A", "B"] * (n // 2)).cast(pl.Categorical),
            "log_type": pl.Series(["api"] * n),
            "input_tokens": rng.integers(1, 500, n),
            "output_tokens": np.where(np.arange(n) % 10 == 0, 0, rng.integers(1, 300, n)),
            "failed": np.arange(n) % 10 == 0,
        }
    )
    result = lengths(table)
    assert [(c.model, c.log_type) for c in result] == [("A", "api"), ("B", "api")]
    assert result[0].request.count == n // 2
    assert result[0].response.count == n // 2 - n // 10  # every failed row is an even row
