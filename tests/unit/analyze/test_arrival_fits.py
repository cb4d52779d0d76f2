"""Goodness of fit as logged, fits per model x log type, work-day alpha/beta per 20 minutes."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import stats

from burstlab.analyze import arrival_fits
from burstlab.analyze.arrival_fits import (
    SLOTS_PER_DAY,
    class_arrivals,
    gap_check,
    logged_cdf,
    workday_slots,
)
from burstlab.analyze.burstiness import window_series
from burstlab.analyze.gaps import censored_pmf, detect_resolution, fit_gaps

DAY = 86_400.0


def gamma_arrivals(shape: float, rate: float, n: int, seed: int, tick: float | None = 1.0):
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.gamma(shape, 1 / (rate * shape), n)) + rng.random() * 100
    return t if tick is None else np.floor(t / tick) * tick


@pytest.mark.parametrize(
    ("family", "shape", "scale"),
    [("gamma", 0.3, 4.0), ("gamma", 2.0, 1.5), ("weibull", 0.6, 3.0), ("weibull", 1.4, 0.8)],
)
def test_censored_pmf_sums_to_the_logged_cdf(family: str, shape: float, scale: float) -> None:
    k = np.arange(400.0)
    pmf = censored_pmf(family, shape, scale, k)  # type: ignore[arg-type]
    cdf = logged_cdf(family, shape, scale, k)  # type: ignore[arg-type]
    assert cdf[-1] == pytest.approx(1.0, abs=1e-6)
    # below 16 ticks both are exact; beyond, the pmf is a second-order expansion
    assert np.abs(np.cumsum(pmf)[:16] - cdf[:16]).max() < 1e-5
    assert np.abs(np.cumsum(pmf) - cdf).max() < 2e-3
    assert logged_cdf(family, shape, scale, np.array([-1.0]))[0] == 0.0  # type: ignore[arg-type]


def test_ks_on_a_grid_is_small_for_the_true_family_and_exact_over_every_tick() -> None:
    arrival = gamma_arrivals(0.5, 0.5, 40_000, seed=1)
    fits = fit_gaps(arrival)
    check = gap_check(arrival, fits)
    assert check.ks_gamma is not None
    assert check.ks_weibull is not None
    assert check.ks_gamma < 0.006
    assert check.ks_weibull > 2 * check.ks_gamma
    # brute force over every whole number of ticks up to the largest gap
    ticks = np.rint(np.diff(arrival)).astype(int)
    k = np.arange(ticks.max() + 1)
    empirical = np.cumsum(np.bincount(ticks)) / ticks.size
    g = fits.gamma
    fitted = logged_cdf("gamma", g.shape, g.scale, k)
    assert check.ks_gamma == pytest.approx(np.abs(empirical - fitted).max(), rel=1e-9)


def test_ks_prefers_weibull_for_weibull_gaps() -> None:
    rng = np.random.default_rng(4)
    arrival = np.floor(np.cumsum(rng.weibull(0.6, 40_000) * 4.0))
    check = gap_check(arrival, fit_gaps(arrival))
    assert check.ks_weibull is not None
    assert check.ks_gamma is not None
    assert check.ks_weibull < 0.006 < check.ks_gamma


def test_continuous_ks_is_the_usual_one() -> None:
    arrival = gamma_arrivals(0.7, 2.0, 20_000, seed=2, tick=None)
    fits = fit_gaps(arrival)
    assert fits.resolution.tick_s is None
    check = gap_check(arrival, fits)
    g = fits.gamma
    usual = stats.kstest(np.diff(arrival), stats.gamma(g.shape, scale=g.scale).cdf).statistic
    assert check.ks_gamma == pytest.approx(usual, rel=1e-6)
    assert check.ks_gamma < 0.015
    h = check.histogram
    assert h.kind == "log"
    assert len(h.lo_s) == 40
    assert h.cdf_empirical[-1] == pytest.approx(0.999, abs=2e-3)


def test_histogram_per_tick_matches_the_counts_and_the_fitted_pmf() -> None:
    arrival = gamma_arrivals(0.5, 0.5, 40_000, seed=3)
    fits = fit_gaps(arrival)
    h = gap_check(arrival, fits).histogram
    assert h.kind == "ticks"
    assert h.tick_s == 1.0
    k = np.rint(np.asarray(h.lo_s)).astype(int)
    assert k.tolist() == list(range(k.size))
    counts = np.bincount(np.rint(np.diff(arrival)).astype(int))
    assert np.allclose(h.empirical, counts[: k.size] / counts.sum())
    assert np.allclose(h.cdf_empirical, np.cumsum(h.empirical))
    assert h.gamma is not None
    assert h.weibull is not None
    assert np.allclose(h.gamma, censored_pmf("gamma", fits.gamma.shape, fits.gamma.scale, k))
    assert np.abs(np.asarray(h.gamma) - h.empirical).max() < 0.01


def test_unidentifiable_fits_get_no_curve_and_say_why() -> None:
    arrival = gamma_arrivals(0.5, 50.0, 20_000, seed=5)  # 50 req/s in whole seconds
    check = gap_check(arrival, fit_gaps(arrival))
    assert check.ks_gamma is None
    assert check.ks_weibull is None
    assert check.histogram.gamma is None
    assert check.histogram.cdf_weibull is None
    assert check.note is not None
    assert "Gamma not drawn: not identifiable" in check.note


def classes_table(parts: dict[tuple[str, str], np.ndarray]) -> pl.DataFrame:
    frames = [
        pl.DataFrame({"arrival_s": a, "model": [m] * a.size, "log_type": [lt] * a.size})
        for (m, lt), a in parts.items()
    ]
    return pl.concat(frames).sort("arrival_s")


def test_two_classes_logged_in_whole_seconds_get_their_own_shapes() -> None:
    table = classes_table(
        {
            ("ChatGPT", "conversation"): gamma_arrivals(0.4, 0.2, 20_000, seed=6),
            ("GPT-4", "api"): gamma_arrivals(2.0, 0.1, 10_000, seed=7),
            ("GPT-4", "conversation"): gamma_arrivals(1.0, 0.001, 30, seed=8),
        }
    )
    whole = fit_gaps(table["arrival_s"].to_numpy())
    out = class_arrivals(table, whole)
    assert [(c.model, c.log_type, c.requests) for c in out] == [
        ("ChatGPT", "conversation", 20_000),
        ("GPT-4", "api", 10_000),
        ("GPT-4", "conversation", 30),
    ]
    chat, api, small = out
    assert chat.fit is not None
    assert api.fit is not None
    assert chat.fit.gamma.identifiable
    assert api.fit.gamma.identifiable
    assert chat.fit.gamma.shape == pytest.approx(0.4, rel=0.1)
    assert chat.fit.gamma.scale == pytest.approx(1 / (0.2 * 0.4), rel=0.15)
    assert api.fit.gamma.shape == pytest.approx(2.0, rel=0.1)
    assert api.fit.gamma.shape_ci[0] < 2.0 < api.fit.gamma.shape_ci[1] * 1.1
    assert chat.mean_rps == pytest.approx(0.2, rel=0.05)
    assert chat.fit.best == "gamma"
    assert small.fit is None
    assert small.note == "30 requests: fewer than 50 to fit"


def test_one_class_reuses_the_whole_fit() -> None:
    table = classes_table({("m", "api"): gamma_arrivals(0.5, 0.5, 2_000, seed=9)})
    whole = fit_gaps(table["arrival_s"].to_numpy())
    (only,) = class_arrivals(table, whole)
    assert only.fit is whole


def day_night(
    days: int,
    *,
    day_offset_s: float,
    weekday0: int | None,
    rate: float = 0.5,
    seed: int = 0,
    weekend_shape: float = 5.0,
) -> np.ndarray:
    """Gamma renewal arrivals restarted every 20 minutes of the wall clock: shape 0.3 from
    08:00 to 20:00 and 2.0 at night on work days, ``weekend_shape`` all day on weekends;
    ``arrival_s`` counted from ``day_offset_s`` after midnight of day 0."""
    rng = np.random.default_rng(seed)
    parts = []
    for w in range(days * SLOTS_PER_DAY):
        start = w * 1200.0
        hour = (start % DAY) / 3600
        weekend = weekday0 is not None and (weekday0 + int(start // DAY)) % 7 >= 5
        shape = weekend_shape if weekend else (0.3 if 8 <= hour < 20 else 2.0)
        t = start + np.cumsum(rng.gamma(shape, 1 / (rate * shape), int(rate * 2400) + 50))
        parts.append(t[t < start + 1200.0])
    wall = np.concatenate(parts)
    return np.round(wall[wall >= day_offset_s] - day_offset_s, 3)  # 1 ms stamps


def test_workday_slots_recover_day_and_night_shapes_and_skip_the_weekend() -> None:
    offset = 4 * 3600 + 600.0  # arrival 0 is Friday 04:10: windows off the 20-minute marks
    arrival = day_night(4, day_offset_s=offset, weekday0=4)  # Fri, Sat, Sun, Mon
    res = detect_resolution(arrival)
    out = workday_slots(arrival, day_offset_s=offset, weekday0=4, resolution=res)
    assert out.days == "Mon-Fri"
    assert out.slots is not None
    assert len(out.slots) == 72
    assert out.slots[0].start == "00:00"
    assert out.slots[-1].start == "23:40"
    day = [s for s in out.slots if 8 <= s.start_s / 3600 < 20]
    night = [s for s in out.slots if not 8 <= s.start_s / 3600 < 20]
    # Friday before 04:10 is not in the table: those slots average Monday alone
    for s in out.slots:
        assert s.observed == (1 if s.start_s < offset - 1200 else 2)
        assert s.windows == s.observed
    day_shape = np.mean([s.shape for s in day])
    night_shape = np.mean([s.shape for s in night])
    assert day_shape == pytest.approx(0.3, rel=0.1)
    assert night_shape == pytest.approx(2.0, rel=0.1)
    day_scale = np.mean([s.scale for s in day])
    assert day_scale == pytest.approx(1 / (0.5 * 0.3), rel=0.15)
    assert np.mean([s.rate_rps for s in out.slots]) == pytest.approx(0.5, rel=0.05)
    assert all(s.shape_sd is not None for s in out.slots if s.windows >= 2)

    unknown = workday_slots(arrival, day_offset_s=offset, weekday0=None, resolution=res)
    assert unknown.days == "all days"
    assert unknown.slots is not None
    assert "weekdays unknown" in (unknown.note or "")
    assert unknown.slots[36].observed == 4  # noon on all four days
    assert unknown.slots[36].shape is not None
    assert unknown.slots[36].shape > 1.0


def test_aligned_windows_are_reused_with_the_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    offset = 3 * 3600.0  # on a 20-minute mark
    arrival = day_night(2, day_offset_s=offset, weekday0=1, seed=1)
    res = detect_resolution(arrival)
    windows = window_series(arrival, 1200.0, res)
    kwargs = {"day_offset_s": offset, "weekday0": 1, "resolution": res}
    fitted = workday_slots(arrival, **kwargs)  # type: ignore[arg-type]
    with monkeypatch.context() as patch:
        patch.setattr(arrival_fits, "fit_windows", None)  # reuse must not fit again
        reused = workday_slots(arrival, windows=windows, **kwargs)  # type: ignore[arg-type]
    assert reused.slots is not None
    assert fitted.slots is not None
    for a, b in zip(reused.slots, fitted.slots, strict=True):
        assert a.windows == b.windows
        assert a.observed == b.observed
        assert (a.shape is None and b.shape is None) or a.shape == pytest.approx(b.shape)


def test_under_a_day_gives_no_table() -> None:
    arrival = gamma_arrivals(0.5, 0.5, 1_000, seed=10)
    out = workday_slots(arrival, resolution=detect_resolution(arrival))
    assert out.slots is None
    assert out.days is None
    assert out.note is not None
    assert out.note.startswith("needs at least a day")
