"""Parameter-only Gamma/Zipf workloads: known answers, seeds, bounds and bad parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize, stats

from burstlab import InputError, validate
from burstlab.workload.parametric import (
    DEFAULT_MAX_TOKENS,
    Window,
    gamma_arrivals,
    parametric_workload,
    parse_gamma,
    windows_from_table,
    zipf_lengths,
)


def positive_gaps(arrival: np.ndarray) -> np.ndarray:
    """Gaps between arrivals; the few below float resolution at that time (shape < 1 puts
    mass near 0) read as 0, which a Gamma fit with loc 0 cannot take."""
    gaps = np.diff(arrival)
    assert (gaps == 0).mean() < 1e-3
    return gaps[gaps > 0]


def truncated_zipf_mle(x: np.ndarray, cap: int) -> float:
    """Exponent maximising the likelihood of a Zipf law on 1..cap."""
    support = np.arange(1, cap + 1, dtype=np.float64)
    mean_log = float(np.log(x).mean())

    def nll(theta: float) -> float:
        return theta * mean_log + math.log(float((support**-theta).sum()))

    return float(optimize.minimize_scalar(nll, bounds=(0.05, 5.0), method="bounded").x)


def test_gaps_fit_the_gamma_they_were_drawn_from() -> None:
    table = parametric_workload(duration_s=200_000.0, gamma=(0.5, 2.0), seed=1)
    validate(table)
    gaps = positive_gaps(table["arrival_s"].to_numpy())
    shape, _, scale = stats.gamma.fit(gaps, floc=0)
    assert shape == pytest.approx(0.5, rel=0.03)
    assert scale == pytest.approx(2.0, rel=0.04)
    assert table.height == pytest.approx(200_000, rel=0.02)  # mean gap 0.5 x 2 = 1 s


@pytest.mark.parametrize(("shape", "scale"), [(2.0, 0.25), (0.25, 0.1)])
def test_other_gamma_parameters(shape: float, scale: float) -> None:
    table = parametric_workload(duration_s=50_000.0 * shape * scale, gamma=(shape, scale), seed=2)
    gaps = positive_gaps(table["arrival_s"].to_numpy())
    fitted_shape, _, fitted_scale = stats.gamma.fit(gaps, floc=0)
    assert fitted_shape == pytest.approx(shape, rel=0.05)
    assert fitted_scale == pytest.approx(scale, rel=0.06)


def test_zipf_exponent_and_bounds() -> None:
    rng = np.random.default_rng(3)
    x = zipf_lengths(rng, 200_000, 1.1, DEFAULT_MAX_TOKENS)
    assert x.dtype == np.int32
    assert (x.min(), x.max()) == (1, 1023)
    assert truncated_zipf_mle(x, 1023) == pytest.approx(1.1, abs=0.01)
    # P(1) / P(2) = 2^theta
    assert (x == 1).sum() / (x == 2).sum() == pytest.approx(2**1.1, rel=0.05)
    y = zipf_lengths(rng, 100_000, 0.8, 50)  # exponents <= 1 work on a finite support
    assert y.max() == 50
    assert truncated_zipf_mle(y, 50) == pytest.approx(0.8, abs=0.02)


def test_table_lengths_use_the_exponent_and_cap() -> None:
    table = parametric_workload(duration_s=50_000.0, zipf=1.4, max_tokens=300, seed=4)
    for column in ("input_tokens", "output_tokens"):
        x = table[column].to_numpy()
        assert x.min() >= 1
        assert x.max() <= 300
        assert truncated_zipf_mle(x, 300) == pytest.approx(1.4, abs=0.03)
    # request and response are drawn independently, as the published generator does
    corr = np.corrcoef(np.log(table["input_tokens"]), np.log(table["output_tokens"]))[0, 1]
    assert abs(corr) < 0.02
    assert not table["failed"].any()
    assert table["model"].null_count() == table.height


def test_same_seed_same_table_other_seed_other_table() -> None:
    a = parametric_workload(duration_s=3600.0, gamma=(0.5, 2.0), zipf=1.1, seed=7)
    b = parametric_workload(duration_s=3600.0, gamma=(0.5, 2.0), zipf=1.1, seed=7)
    c = parametric_workload(duration_s=3600.0, gamma=(0.5, 2.0), zipf=1.1, seed=8)
    assert a.equals(b)
    assert not a.equals(c)


def test_duration_and_rps_are_respected() -> None:
    table = parametric_workload(duration_s=36_000.0, gamma=(0.5, 2.0), rps=20.0, seed=5)
    arrival = table["arrival_s"].to_numpy()
    assert arrival[0] >= 0
    assert arrival[-1] < 36_000.0
    assert np.all(np.diff(arrival) >= 0)
    assert table.height / 36_000.0 == pytest.approx(20.0, rel=0.02)
    gaps = positive_gaps(arrival)
    fitted_shape, _, fitted_scale = stats.gamma.fit(gaps, floc=0)
    assert fitted_shape == pytest.approx(0.5, rel=0.03)  # --rps keeps the burstiness
    assert fitted_scale == pytest.approx(1 / (20 * 0.5), rel=0.04)
    # the tail is covered: no gap at the end longer than a few mean gaps would explain
    assert arrival[-1] > 36_000.0 - 2.0


def test_windows_from_a_table_at_real_length_and_at_a_pace() -> None:
    rows = [(2.0, 0.5, 9.9), (0.0, None, None), (10.0, None, 0.1)]
    real = windows_from_table(rows, 600.0)
    assert real == [Window(2.0, 0.5, 600.0), Window(0.0, 1.0, 600.0), Window(10.0, 1.0, 600.0)]
    assert real[0].scale_s == pytest.approx(1.0)  # from the rate, not the fitted 9.9
    assert math.isinf(real[1].scale_s)
    paced = windows_from_table(rows, 600.0, pace_s=60.0)
    assert [w.length_s for w in paced] == [60.0, 60.0, 60.0]

    rng = np.random.default_rng(0)
    arrival = gamma_arrivals(rng, windows_from_table(rows * 200, 600.0, pace_s=60.0))
    window = (arrival // 60.0).astype(int) % 3
    counts = np.bincount(window, minlength=3) / (200 * 60.0)
    assert counts[0] == pytest.approx(2.0, rel=0.05)
    assert counts[1] == 0  # a silent window stays silent
    assert counts[2] == pytest.approx(10.0, rel=0.03)


def test_windows_cycle_and_cut_and_rescale() -> None:
    windows = windows_from_table([(1.0, 1.0, 1.0), (4.0, 0.5, 0.5)], 1200.0, pace_s=60.0)
    once = parametric_workload(windows=windows, seed=0)
    assert once["arrival_s"].max() < 120.0  # default: the table once
    long = parametric_workload(windows=windows, duration_s=6000.0, seed=0)
    arrival = long["arrival_s"].to_numpy()
    assert arrival.max() < 6000.0
    second = (arrival // 60.0).astype(int) % 2 == 1
    assert second.sum() / 3000.0 == pytest.approx(4.0, rel=0.05)
    assert (~second).sum() / 3000.0 == pytest.approx(1.0, rel=0.08)
    scaled = parametric_workload(windows=windows, duration_s=6000.0, rps=25.0, seed=0)
    assert scaled.height / 6000.0 == pytest.approx(25.0, rel=0.03)
    ratio = (scaled["arrival_s"] // 60.0 % 2 == 1).sum() / (
        scaled["arrival_s"] // 60.0 % 2 == 0
    ).sum()
    assert ratio == pytest.approx(
        4.0, rel=0.1
    )  # one factor for all windows: the shape of the day stays


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"duration_s": 0.0}, "--duration"),
        ({"duration_s": math.nan}, "--duration"),
        ({"duration_s": math.inf}, "--duration"),
        ({}, "--duration is needed"),
        ({"duration_s": 60.0, "gamma": (0.0, 2.0)}, "--gamma shape"),
        ({"duration_s": 60.0, "gamma": (0.5, -1.0)}, "--gamma scale"),
        ({"duration_s": 60.0, "zipf": 0.0}, "--zipf"),
        ({"duration_s": 60.0, "zipf": math.nan}, "--zipf"),
        ({"duration_s": 60.0, "rps": -2.0}, "--rps"),
        ({"duration_s": 60.0, "max_tokens": 0}, "--length-cap"),
        ({"duration_s": 60.0, "max_tokens": 3_000_000}, "--length-cap"),
        ({"duration_s": 1e9, "rps": 1000.0}, "requests"),
        ({"windows": [Window(0.0, 1.0, 60.0)], "rps": 3.0}, "silent"),
        ({"windows": [], "duration_s": 60.0}, "no per-window table"),
        (
            {"windows": [Window(1.0, 1.0, 60.0)], "gamma": (1.0, 1.0)},
            "cannot be combined",
        ),
    ],
)
def test_bad_parameters(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        parametric_workload(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "ok"),
    [("0.5,2", (0.5, 2.0)), (" 1 , 3.5 ", (1.0, 3.5)), ("0.5", None), ("0.5,", None),
     ("a,b", None), ("0.5,2,3", None), ("nan,2", None), ("1,inf", None), ("-1,2", None)],
)  # fmt: skip
def test_parse_gamma(text: str, ok: tuple[float, float] | None) -> None:
    if ok is None:
        with pytest.raises(InputError, match="--gamma"):
            parse_gamma(text)
    else:
        assert parse_gamma(text) == ok


@pytest.mark.parametrize(
    ("rows", "pace", "message"),
    [
        ([], None, "no per-window table"),
        ([(math.nan, 1.0, 1.0)], None, "rate"),
        ([(-1.0, 1.0, 1.0)], None, "rate"),
        ([(1.0, 0.0, 1.0)], None, "shape"),
        ([(1.0, 1.0, 1.0)], 0.0, "--pace"),
        ([(1.0, 1.0, 1.0)], math.nan, "--pace"),
    ],
)
def test_bad_window_tables(
    rows: list[tuple[float, float | None, float | None]], pace: float | None, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        windows_from_table(rows, 1200.0, pace_s=pace)
