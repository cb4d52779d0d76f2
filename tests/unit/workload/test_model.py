"""Fit then sample: the generated workload matches the source (seeded known answers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import polars as pl
import pytest
from scipy import stats

from burstlab.analyze.burstiness import arrival_stats, dispersion, window_series
from burstlab.core.errors import InputError
from burstlab.trace.schema import conform, validate
from burstlab.workload.arrivals import DailyProfile, MultiscaleArrivals
from burstlab.workload.fidelity import combine, fidelity, reference
from burstlab.workload.model import WorkloadModel, fit, load_model
from burstlab.workload.synthetic import synthetic_trace
from support.frames import workload

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


@pytest.mark.slow
def test_window_gamma_replays_the_windows() -> None:
    source = varying_trace()
    model = fit(source, window_s=WINDOW)
    work = model.sample(duration_s=model.duration_s, seed=1, arrivals="window-gamma")
    validate(work)
    src, gen = source["arrival_s"].to_numpy(), work["arrival_s"].to_numpy()
    s_win, g_win = window_series(src, WINDOW), window_series(gen, WINDOW)
    n = min(len(s_win.rate_rps), len(g_win.rate_rps))
    expected, got = np.asarray(s_win.rate_rps[:n]), np.asarray(g_win.rate_rps[:n])
    assert np.median(np.abs(got - expected) / expected) <= 0.10
    assert arrival_stats(gen).cv == pytest.approx(arrival_stats(src).cv, rel=0.10)
    assert stats.ks_2samp(np.diff(src), np.diff(gen)).statistic <= 0.05


def on_off_trace(seed: int = 0, span_s: float = 40_000.0) -> pl.DataFrame:
    """A Markov on/off source (not the model's own family), logged in whole seconds:
    on spells (mean 20 s) at 10 req/s, off spells (mean 60 s) at 0.5 req/s."""
    rng = np.random.default_rng(seed)
    spells = rng.exponential(1.0, 4000) * np.tile([20.0, 60.0], 2000)
    edges = np.concatenate([[0.0], np.cumsum(spells)])
    rates = np.tile([10.0, 0.5], 2000)
    counts = rng.poisson(rates * spells)
    which = np.repeat(np.arange(spells.size), counts)
    arrival = np.sort(edges[which] + rng.random(which.size) * spells[which])
    arrival = np.floor(arrival[arrival < span_s])
    return workload((arrival - arrival[0]).tolist())


@pytest.mark.slow
def test_multiscale_keeps_burstiness_at_every_scale_in_new_traffic() -> None:
    source = on_off_trace()
    model = fit(source)
    assert model.default_arrivals == "multiscale"
    assert model.resolution_s == 1.0
    assert model.arrivals is not None
    # the source is on a quarter of the time, switching every 15 s, at 5% of the rate when off
    assert 0.15 < model.arrivals.on_share < 0.4
    assert 7.0 < model.arrivals.on_off_s < 30.0
    src = source["arrival_s"].to_numpy()
    ref = reference(source)
    runs = []
    for seed in range(4):
        work = model.sample(seed=seed)
        gen = work["arrival_s"].to_numpy()
        assert not np.array_equal(gen[:50], src[:50])  # a new path, not a copy
        runs.append(fidelity(ref, work))
    result = combine(runs)
    for key in ("1s", "10s", "60s", "600s"):
        stat = result.idc[key]
        assert stat.error is not None
        assert abs(stat.error) < 0.2, (key, stat)
    assert result.cv.error is not None
    assert abs(result.cv.error) < 0.25
    assert result.ks_gaps.workload is not None
    assert result.ks_gaps.workload < 0.05


@pytest.mark.slow
def test_classes_lengths_and_failures_survive() -> None:
    source = varying_trace()
    work = fit(source, window_s=WINDOW).sample(seed=1)
    validate(work)
    assert stats.ks_2samp(source["input_tokens"], work["input_tokens"]).statistic <= 0.05
    ok_s = source.filter(~pl.col("failed"))["output_tokens"]
    ok_g = work.filter(~pl.col("failed"))["output_tokens"]
    assert stats.ks_2samp(ok_s, ok_g).statistic <= 0.05
    share = (work["model"].cast(pl.String) == "GPT-4").mean()
    assert share == pytest.approx(0.3, abs=0.02)
    assert work["failed"].mean() == pytest.approx(source["failed"].mean(), abs=0.005)


@pytest.mark.slow
def test_rps_burstiness_shape_cap_and_json_round_trip() -> None:
    model = fit(varying_trace(), window_s=WINDOW)
    again = WorkloadModel.model_validate_json(model.model_dump_json())
    assert again == model
    work = model.sample(duration_s=3600, rps=50, seed=2, length_cap=1000)
    assert work.height / 3600 == pytest.approx(50, rel=0.02)  # multiscale: exactly on average
    assert work["input_tokens"].max() <= 1000  # type: ignore[operator]
    work = model.sample(duration_s=3600, rps=50, seed=2, arrivals="window-gamma")
    first = np.mean([w.rate_rps for w in model.window_gamma.windows[:3]])
    assert work.height / 3600 == pytest.approx(50 * first / model.mean_rps, rel=0.1)
    base = model.sample(duration_s=4 * WINDOW, seed=3)["arrival_s"].to_numpy()
    bursty = model.sample(duration_s=4 * WINDOW, seed=3, burstiness=3)["arrival_s"].to_numpy()
    assert dispersion(bursty).idc["60s"] > 1.5 * dispersion(base).idc["60s"]  # type: ignore[operator]
    calm = model.sample(duration_s=WINDOW, seed=3, shape=2.0, arrivals="window-gamma")
    fitted = arrival_stats(calm["arrival_s"].to_numpy()).gaps.gamma
    assert fitted.shape == pytest.approx(2.0, rel=0.1)
    same = model.sample(duration_s=600, seed=5)
    assert same.equals(model.sample(duration_s=600, seed=5))
    assert not same.equals(model.sample(duration_s=600, seed=6))


@pytest.mark.slow
def test_a_version_1_model_still_loads_and_samples(tmp_path: Path) -> None:
    model = fit(varying_trace(), window_s=WINDOW)
    old = model.model_dump(mode="json")
    gamma = old.pop("window_gamma")
    old.pop("arrivals")
    old.pop("resolution_s")
    old |= {"version": 1, "window_s": gamma["window_s"], "windows": gamma["windows"]}
    old["zero_gap_share"] = 0.25
    old["reference"] = {
        "requests": 100, "mean_rps": 2.0, "cv": 1.5, "gamma_shape": 0.4,
        "idc": {"1s": 1.2, "60s": 9.0}, "window_s": 60.0, "window_rate_rps": [2.0],
        "gap_quantiles": [0.0, 1.0, 5.0], "input_quantiles": [1.0, 9.0],
        "output_quantiles": [1.0, 9.0],
    }  # fmt: skip
    path = tmp_path / "old.json"
    path.write_bytes(orjson.dumps(old))
    loaded = load_model(path)
    assert loaded is not None
    assert loaded.arrivals is None
    assert loaded.default_arrivals == "window-gamma"
    assert loaded.window_gamma.zero_gap_share == 0.25
    assert loaded.sample(duration_s=600, seed=1).height > 100
    with pytest.raises(InputError, match="format version 1"):
        loaded.sample(duration_s=600, arrivals="multiscale")
    path.write_bytes(orjson.dumps(old | {"version": 99}))
    with pytest.raises(InputError, match="version 99"):
        load_model(path)


def batch_trace(seed: int = 0, span_s: float = 7200.0) -> pl.DataFrame:
    """Batches of many requests within ~0.2 s (like a code service), in milliseconds."""
    rng = np.random.default_rng(seed)
    starts = np.cumsum(rng.gamma(0.5, 1 / (0.1 * 0.5), 2000))
    starts = starts[starts < span_s]
    size = rng.geometric(1 / 12, starts.size)
    t = np.repeat(starts, size) + rng.exponential(0.2, int(size.sum()))
    t = np.sort(np.round(t[t < span_s], 3))
    return workload((t - t[0]).tolist(), input_tokens=100, output_tokens=10)


@pytest.mark.slow
def test_batches_are_fitted_as_bursts_and_their_gaps_kept() -> None:
    source = batch_trace()
    model = fit(source)
    assert model.arrivals is not None
    assert model.arrivals.cluster_mean > 4  # batches of 12 on average
    ref = reference(source)
    ms = combine([fidelity(ref, model.sample(seed=s)) for s in range(3)])
    wg = combine([fidelity(ref, model.sample(seed=s, arrivals="window-gamma")) for s in range(3)])
    assert ms.cv.error is not None
    assert wg.cv.error is not None
    assert abs(ms.cv.error) < 0.25
    assert abs(wg.cv.error) > 0.5  # the per-window Gamma cannot make batches
    for key in ("1s", "10s"):
        assert abs(ms.idc[key].error or 9) < 0.25, key
        assert abs(ms.idc[key].error or 0) < abs(wg.idc[key].error or 0), key


@pytest.mark.slow
def test_a_daily_cycle_is_kept_in_new_days() -> None:
    source = synthetic_trace(7 * 86_400, rps=0.3, seed=1)
    model = fit(source)
    assert model.arrivals is not None
    assert model.arrivals.profile is not None
    gen = model.sample(duration_s=3 * 86_400, seed=2)["arrival_s"].to_numpy()
    src = source["arrival_s"].to_numpy()
    by_hour = [
        np.bincount(((t % 86_400) // 3600).astype(np.int64), minlength=24) for t in (src, gen)
    ]
    assert np.corrcoef(*by_hour)[0, 1] > 0.95
    assert gen.size / (3 * 86_400) == pytest.approx(0.3, rel=0.05)
    short = fit(source.filter(pl.col("arrival_s") < 86_400))
    assert short.arrivals is not None
    assert short.arrivals.profile is None  # one day shows no cycle to fit


def test_a_part_of_a_day_is_covered_at_the_exact_rate() -> None:
    """A profile runs in operational time; the workload still spans its whole duration."""
    profile = DailyProfile(bin_s=600.0, factors=[0.2] * 72 + [1.8] * 72)
    model = MultiscaleArrivals(
        mean_rps=1.0, gap_shape=1.0, tau_s=[], variance=[], profile=profile,
        resolution_s=None, fit_scales_s=[], fit_idc=[], model_idc=[],
    )  # fmt: skip
    for hours in (6, 12, 30):
        t = model.sample(np.random.default_rng(0), hours * 3600.0, 1.0)
        assert t[-1] > hours * 3600 - 60
        assert t.size / (hours * 3600) == pytest.approx(1.0, rel=0.03)
    quiet = model.sample(np.random.default_rng(1), 86_400.0, 1.0)
    assert (quiet < 43_200).mean() == pytest.approx(0.1, abs=0.02)  # 0.2 vs 1.8 of the rate


@pytest.mark.slow
def test_what_if_knobs_are_bounded() -> None:
    model = fit(varying_trace(), window_s=WINDOW)
    with pytest.raises(InputError, match="gap shape"):
        model.sample(duration_s=600, shape=1e-12)
    with pytest.raises(InputError, match="--burstiness"):
        model.sample(duration_s=600, burstiness=1e9)


def test_fidelity_of_a_far_faster_workload_stays_small() -> None:
    """A sparse source (a 10^7 s span) against a one-hour workload: trace time spans
    billions of minutes, counted by binary searches over a subset, not densely."""
    source = workload([0.0, 1.0, 2.0, 1e7])
    work = workload(np.sort(np.random.default_rng(2).uniform(0, 3600, 5000)).tolist())
    result = fidelity(reference(source), work, time_scale=1e7 / 3600 * 100)
    assert result.window_rate_error is None
    assert result.ks_minute_rate.workload is not None
