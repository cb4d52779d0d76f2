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
    second_mode,
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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_monotone_decreasing_is_never_bimodal(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for x in (rng.zipf(2.5, 20_000), rng.geometric(0.5, 20_000), rng.integers(1, 1001, 20_000)):
        coefficient = bimodality_coefficient(x.astype(float))
        assert coefficient is not None
        assert coefficient > 5 / 9  # Sarle's coefficient alone would flag it
        fit = length_fit(x.astype(float))
        assert fit.second_mode is None
        assert not fit.bimodal


def test_two_modes_found_where_they_are() -> None:
    rng = np.random.default_rng(10)
    x = np.round(np.concatenate([rng.lognormal(3, 0.4, 3000), rng.lognormal(6.5, 0.4, 1500)]))
    fit = length_fit(x)
    assert fit.bimodal
    assert fit.second_mode is not None
    assert np.exp(6.5 - 0.6) < fit.second_mode < np.exp(6.5 + 0.4)
    assert second_mode(x[:40]) is None  # too few to say


def test_regression_slope_within_2_percent() -> None:
    rng = np.random.default_rng(8)
    inp = rng.integers(10, 4000, 20_000)
    out = 0.3 * inp + 20 + rng.normal(0, 30, inp.size)
    rel = relation(inp, out)
    assert rel.slope == pytest.approx(0.3, rel=0.02)
    assert rel.intercept == pytest.approx(20, abs=3)
    assert rel.r_squared > 0.9
    assert len(rel.bin_input) == len(rel.bin_median_output) > 5
    assert sum(rel.bin_count) == inp.size


def test_relation_band_per_bin() -> None:
    # output = input exactly plus a uniform error in [-50, 50]: band of the error around it
    rng = np.random.default_rng(11)
    inp = np.repeat([100, 1000, 10_000], 20_000)
    out = inp + rng.uniform(-50, 50, inp.size)
    rel = relation(inp, out, bins=4)
    assert rel.bin_count == [20_000, 20_000, 20_000]
    for centre, mean, p5, p50, p95 in zip(
        rel.bin_input,
        rel.bin_mean_output,
        rel.bin_p5_output,
        rel.bin_median_output,
        rel.bin_p95_output,
        strict=True,
    ):
        x = [100, 1000, 10_000][rel.bin_input.index(centre)]
        assert mean == pytest.approx(x, abs=1.5)
        assert p50 == pytest.approx(x, abs=1.5)
        assert p5 == pytest.approx(x - 45, abs=1.5)
        assert p95 == pytest.approx(x + 45, abs=1.5)


@pytest.mark.parametrize("value", [1, 5, 7, 500, 4096])
def test_relation_of_a_constant_input(value: int) -> None:
    out = np.arange(1, 101)
    rel = relation(np.full(100, value), out)
    assert (rel.slope, rel.r_squared) == (0.0, 0.0)
    assert rel.intercept == pytest.approx(50.5)
    assert rel.bin_input == [pytest.approx(value)]
    assert rel.bin_median_output == [pytest.approx(50.5)]
    assert rel.bin_p5_output[0] == pytest.approx(np.percentile(out, 5))
    assert rel.bin_count == [100]


def test_relation_of_constant_columns_and_zero_inputs() -> None:
    rel = relation(np.zeros(10), np.full(10, 3.0))
    assert (rel.slope, rel.intercept, rel.r_squared) == (0.0, 3.0, 0.0)
    assert rel.bin_mean_output == [3.0]
    table = pl.DataFrame(
        {
            "model": ["m"] * 50,
            "log_type": ["api"] * 50,
            "input_tokens": [64] * 50,
            "output_tokens": [8] * 50,
            "failed": [False] * 50,
        }
    )
    (c,) = lengths(table)
    assert c.relation is not None
    assert c.relation.bin_median_output == [8.0]
    assert not c.request.bimodal


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
