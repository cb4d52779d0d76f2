"""Burstiness statistics recover known answers from seeded synthetic arrivals."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from burstlab.analyze.burstiness import burstiness, dispersion


def table_of(arrival: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame({"arrival_s": arrival})


@pytest.mark.parametrize(("shape", "scale"), [(0.3, 2.0), (1.0, 0.5), (4.0, 0.1)])
def test_gamma_recovered_within_5_percent(shape: float, scale: float) -> None:
    gaps = np.random.default_rng(1).gamma(shape, scale, 100_000)
    result = burstiness(table_of(np.cumsum(gaps)))
    fit = result.gaps.gamma
    assert fit.identifiable
    assert fit.shape == pytest.approx(shape, rel=0.05)
    assert fit.scale == pytest.approx(scale, rel=0.05)
    assert fit.shape_ci[0] < fit.shape < fit.shape_ci[1]
    assert result.cv == pytest.approx(1 / np.sqrt(shape), rel=0.05)


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


def test_window_fit_respects_whole_second_stamps() -> None:
    rng = np.random.default_rng(8)
    arrival = np.floor(np.cumsum(rng.gamma(0.5, 1.0, 40_000)))  # 2 req/s, whole seconds
    shapes = np.array(
        [
            np.nan if s is None else s
            for s in burstiness(table_of(arrival), window_s=4000).windows.shape
        ]
    )
    assert np.nanmedian(shapes) == pytest.approx(0.5, rel=0.1)


def test_poisson_index_of_dispersion_is_one() -> None:
    arrival = np.cumsum(np.random.default_rng(4).exponential(1.0, 400_000))  # 6,600 minutes
    result = burstiness(table_of(arrival))
    for key, value in result.dispersion.idc.items():
        assert value == pytest.approx(1.0, rel=0.06), key
    assert result.poisson.dispersion.idc["10s"] == pytest.approx(1.0, rel=0.1)
    assert result.gaps.gamma.shape == pytest.approx(1.0, rel=0.05)


def test_twins_in_one_second_are_a_burst_not_a_smooth_process() -> None:
    arrival = np.repeat(np.arange(1000.0), 2)  # every request has a twin in the same second
    result = burstiness(table_of(arrival))
    assert result.gaps.zero_gap_share == pytest.approx(0.5, abs=0.01)
    assert result.gaps.gaps == 1999
    assert result.gaps.resolution.label == "1 s"
    assert not result.gaps.gamma.identifiable  # gaps of 0 and 1 tick only
    assert "fewer than three distinct" in (result.gaps.gamma.note or "")


def test_idc_is_not_judged_where_it_cannot_be() -> None:
    rng = np.random.default_rng(5)
    slow = np.floor(np.cumsum(rng.exponential(50.0, 200)))  # 0.02 req/s, whole seconds
    result = dispersion(slow)
    assert result.idc["1s"] is None
    assert "too few" in result.notes["1s"]
    assert result.idc["600s"] is not None  # ~16 bins of 12 requests
    short = np.cumsum(rng.exponential(0.1, 3000))  # 300 s
    assert dispersion(short).idc["600s"] is None
    assert "complete bins" in dispersion(short).notes["600s"]
    grid = np.repeat(np.arange(0.0, 3000.0, 3.0), 4)  # a 3 s grid
    assert dispersion(grid).idc["1s"] is None
    assert "resolution" in dispersion(grid).notes["1s"]


def test_counts_on_a_grid_ignore_jitter_at_the_tick() -> None:
    rng = np.random.default_rng(6)
    stamps = np.arange(0.0, 6000.0, 3.0) + rng.uniform(-0.002, 0.002, 2000)
    jittered = np.repeat(stamps, 5)  # Mooncake-like: one stamp per tick, a jittered grid
    assert dispersion(jittered).idc["60s"] == pytest.approx(0.0, abs=1e-9)  # 100 per bin, exactly
