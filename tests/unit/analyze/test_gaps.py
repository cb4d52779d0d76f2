"""Grid-aware gap fits: resolution detection, known answers at 1 s and 1 ms, identifiability."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from burstlab.analyze.gaps import (
    GapData,
    _loglik,
    censored_pmf,
    detect_resolution,
    fit_gaps,
    fit_windows,
)

SHAPES = (0.2, 0.5, 1.0, 2.0)
RATES = (0.05, 0.5, 5.0, 50.0)


def logged(shape: float, rate: float, tick: float, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.gamma(shape, 1 / (rate * shape), n)) + rng.random() * 1000
    return np.floor(t / tick) * tick


@pytest.mark.parametrize("tick", [1.0, 1e-3])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("rate", RATES)
def test_known_shape_within_10_percent_where_identified(
    tick: float, shape: float, rate: float
) -> None:
    arrival = logged(shape, rate, tick, 40_000, seed=int(shape * 100 + rate * 10))
    fit = fit_gaps(arrival)
    assert fit.resolution.tick_s == pytest.approx(tick)
    gamma = fit.gamma
    # whole-second stamps hide the shape once a tick holds several requests on average;
    # millisecond stamps never do at these rates, nor seconds at 1 request per 2 s or less
    if tick < 1 or rate <= 0.5:
        assert gamma.identifiable, gamma.note
    if rate >= 50 and tick == 1.0:
        assert not gamma.identifiable
        assert (gamma.note or "").startswith("not identifiable")
    if gamma.identifiable:
        assert gamma.shape == pytest.approx(shape, rel=0.10)
        assert gamma.scale == pytest.approx(1 / (rate * shape), rel=0.15)


def test_whole_seconds_no_longer_look_smoother_than_poisson() -> None:
    arrival = logged(1.0, 0.5, 1.0, 40_000, seed=3)
    naive = np.diff(arrival)
    naive = naive[naive > 0]
    naive_shape = stats.gamma.fit(naive, floc=0)[0]
    assert naive_shape > 1.5  # dropping the zero gaps: "smoother than Poisson"
    assert fit_gaps(arrival).gamma.shape == pytest.approx(1.0, rel=0.05)


def test_weibull_known_answer_and_best_family() -> None:
    rng = np.random.default_rng(4)
    arrival = np.floor(np.cumsum(rng.weibull(0.6, 40_000) * 4.0))
    fit = fit_gaps(arrival)
    assert fit.weibull.shape == pytest.approx(0.6, rel=0.05)
    assert fit.weibull.scale == pytest.approx(4.0, rel=0.1)
    assert fit.best == "weibull"
    assert fit_gaps(logged(0.4, 0.2, 1.0, 40_000, seed=5)).best == "gamma"


def test_censored_probabilities_match_the_hat_integral() -> None:
    """P(k) = int f(x) hat(x - k) dx, checked by quadrature for k = 0..40."""
    for shape, scale in ((0.3, 2.0), (2.5, 0.7)):
        ks = np.arange(41.0)
        data = GapData(
            window=np.arange(ks.size), k=ks, logk=np.log(np.maximum(ks, 1e-300)),
            n=np.ones(ks.size), exact=ks < 16, windows=ks.size,
        )  # fmt: skip
        p0 = np.full(ks.size, np.log(shape))
        p1 = np.full(ks.size, np.log(scale))
        got = np.exp(_loglik("gamma", data, p0, p1))
        for k in (0, 1, 2, 5, 15, 16, 40):
            want = integrate.quad(
                lambda x, k=k, a=shape, th=scale: (
                    stats.gamma.pdf(x, a, scale=th) * max(0, 1 - abs(x - k))
                ),
                max(k - 1, 0), k + 1, points=[k], limit=200,
            )[0]  # fmt: skip
            assert got[k] == pytest.approx(want, rel=2e-3, abs=1e-6), (shape, k)
        assert got.sum() == pytest.approx(1 - stats.gamma.sf(40.5, shape, scale=scale), rel=5e-3)


@pytest.mark.parametrize(
    ("arrival", "label"),
    [
        (np.floor(np.cumsum(np.random.default_rng(1).exponential(2.0, 5000))), "1 s"),
        (np.round(np.cumsum(np.random.default_rng(2).exponential(0.2, 5000)), 3), "1 ms"),
        (np.cumsum(np.random.default_rng(3).exponential(0.2, 5000)), "continuous"),
    ],
)
def test_resolution_detected(arrival: np.ndarray, label: str) -> None:
    assert detect_resolution(arrival).label.startswith(label)


def test_a_jittered_coarse_grid_is_found_and_flagged() -> None:
    rng = np.random.default_rng(7)
    # as in Mooncake's trace: requests of one tick share a stamp, ticks jitter by a few ms
    stamps = np.arange(0.0, 3600.0, 3.0) + rng.integers(-3, 4, 1200) / 1000
    arrival = np.repeat(stamps, rng.poisson(10, 1200))
    res = detect_resolution(arrival)
    assert res.tick_s == pytest.approx(3.0)
    assert res.label == "3 s grid"
    fit = fit_gaps(arrival)
    assert not fit.gamma.identifiable
    assert not fit.weibull.identifiable
    assert fit.best is None
    assert "3 s grid" in (fit.note or "")


def test_window_fits_in_one_batch_match_single_fits() -> None:
    rng = np.random.default_rng(9)
    parts = []
    for i, a in enumerate((0.3, 1.0, 3.0)):  # each fills its 10,000-s window
        t = np.floor(np.cumsum(rng.gamma(a, 1.0 / a, 12_000)))
        parts.append(t[t < 10_000] + 10_000 * i)
    arrival = np.concatenate(parts)
    windows = fit_windows(arrival, 10_000.0)
    for i, part in enumerate(parts):
        own = arrival[(arrival >= part[0] - 1e4 * (i > 0)) & (arrival <= part[-1])]
        own = own[np.searchsorted(own, part[0]) - (i > 0) :]  # with the gap into the window
        single = fit_gaps(own).gamma.shape
        assert windows.shape[i] == pytest.approx(single, rel=1e-3)
        assert windows.shape_lo[i] < windows.shape[i] < windows.shape_hi[i]


@pytest.mark.parametrize(
    "jitter",
    [
        lambda rng, n: rng.normal(0, 1e-9, n),  # float noise
        lambda rng, n: 0.001 * rng.integers(0, 3, n),  # a few ms between requests of one tick
    ],
)
def test_a_grid_survives_noise_between_requests_of_one_tick(jitter: object) -> None:
    rng = np.random.default_rng(11)
    stamps = np.floor(np.cumsum(rng.exponential(0.5, 30_000)))  # Poisson, whole seconds
    noisy = np.sort(stamps + jitter(rng, stamps.size))  # type: ignore[operator]
    fit = fit_gaps(noisy)
    assert fit.resolution.tick_s == pytest.approx(1.0)
    assert fit.gamma.shape == pytest.approx(1.0, rel=0.1)


@pytest.mark.parametrize(
    ("family", "shape", "scale"),
    [("weibull", 20.0, 2.0), ("weibull", 200.0, 5.0), ("gamma", 200.0, 0.01)],
)
def test_a_law_narrower_than_a_tick_is_censored_exactly(
    family: str, shape: float, scale: float
) -> None:
    law = (
        stats.weibull_min(shape, scale=scale)
        if family == "weibull"
        else stats.gamma(shape, scale=scale)
    )
    ks = np.arange(0.0, 12.0)
    got = censored_pmf(family, shape, scale, ks)  # type: ignore[arg-type]
    for k in ks:
        want = integrate.quad(
            lambda x, k=k: law.pdf(x) * max(0.0, 1 - abs(x - k)),
            max(k - 1, 0), k + 1, points=[k], limit=400,
        )[0]  # fmt: skip
        assert got[int(k)] == pytest.approx(want, abs=2e-4), k
    assert got.sum() == pytest.approx(1.0, abs=1e-3)


def test_a_peaked_weibull_is_recovered_on_a_coarse_grid() -> None:
    rng = np.random.default_rng(12)
    arrival = np.floor(np.cumsum(rng.weibull(10.0, 20_000) * 2.5))  # gaps of ~2.4 ticks
    fit = fit_gaps(arrival).weibull
    assert fit.identifiable
    assert fit.shape_ci[0] <= 10.0 <= fit.shape_ci[1]


def test_unsorted_or_negative_times_are_refused_in_words() -> None:
    with pytest.raises(ValueError, match="sorted"):
        fit_gaps(np.array([3.0, 1.0, 2.0, 5.0]))
    with pytest.raises(ValueError, match="negative"):
        fit_windows(np.array([-5.0, 1.0, 2.0, 5.0]), 10.0)
