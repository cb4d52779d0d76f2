"""Burstiness statistics recover known answers from seeded synthetic arrivals."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from burstlab.analyze.burstiness import burstiness
from burstlab.analyze.gamma import gamma_mle


def table_of(arrival: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame({"arrival_s": arrival})


@pytest.mark.parametrize(("shape", "scale"), [(0.3, 2.0), (1.0, 0.5), (4.0, 0.1)])
def test_gamma_recovered_within_5_percent(shape: float, scale: float) -> None:
    gaps = np.random.default_rng(1).gamma(shape, scale, 100_000)
    result = burstiness(table_of(np.cumsum(gaps)))
    assert result.gamma.shape == pytest.approx(shape, rel=0.05)
    assert result.gamma.scale == pytest.approx(scale, rel=0.05)
    assert result.cv == pytest.approx(1 / np.sqrt(shape), rel=0.05)


def test_gamma_mle_matches_scipy() -> None:
    from scipy import stats

    x = np.random.default_rng(2).gamma(0.7, 3.0, 20_000)
    shape, scale = gamma_mle(np.array([x.mean()]), np.array([np.log(x).mean()]))
    ref_shape, _, ref_scale = stats.gamma.fit(x, floc=0)
    assert shape[0] == pytest.approx(ref_shape, rel=1e-6)
    assert scale[0] == pytest.approx(ref_scale, rel=1e-6)


def test_window_fit_recovers_a_step_change_of_shape() -> None:
    rng = np.random.default_rng(3)
    first = np.cumsum(rng.gamma(0.25, 4.0, 3000))  # mean gap 1 s: ~3000 s
    second = first[-1] + np.cumsum(rng.gamma(4.0, 0.25, 3000))
    arrival = np.concatenate([first, second])
    windows = burstiness(table_of(arrival), window_s=1000.0).windows
    shapes = np.array([s if s is not None else np.nan for s in windows.shape])
    assert np.nanmedian(shapes[:2]) == pytest.approx(0.25, rel=0.2)
    assert np.nanmedian(shapes[-2:]) == pytest.approx(4.0, rel=0.2)
    assert sum(windows.requests) == arrival.size


def test_poisson_index_of_dispersion_is_one() -> None:
    arrival = np.cumsum(np.random.default_rng(4).exponential(1.0, 400_000))  # 6,600 minutes
    result = burstiness(table_of(arrival))
    for value in result.idc.values():
        assert value == pytest.approx(1.0, rel=0.05)
    assert result.poisson.idc["10s"] == pytest.approx(1.0, rel=0.1)
    assert result.gamma.shape == pytest.approx(1.0, rel=0.05)


def test_zero_gaps_are_reported_not_fitted() -> None:
    arrival = np.repeat(np.arange(1000.0), 2)  # every request has a twin in the same second
    result = burstiness(table_of(arrival))
    assert result.zero_gap_share == pytest.approx(0.5, abs=0.01)
    assert result.gamma.gaps == 999
