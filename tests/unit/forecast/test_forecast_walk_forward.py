"""Walk-forward: no future value reaches a prediction (features or refits); NMAE and NMSE."""

from __future__ import annotations

import numpy as np
import pytest

from burstlab.forecast.evaluate import block_size, nmae, nmse, walk_forward
from burstlab.forecast.features import first_row
from burstlab.forecast.models import MODELS, XGBoostParams, moving_average

SMALL = XGBoostParams(n_estimators=15, max_depth=3)
HOUR = 3600


def series(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hourly counts with a daily cycle and noise; a few intervals not valid (as a mean)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    values = rng.poisson(50 * (1.5 + np.sin(2 * np.pi * t / 24))).astype(float)
    valid = rng.random(n) > 0.05
    return values, valid


def run(values: np.ndarray, valid: np.ndarray, horizon: int, **kw: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {
        "granularity_s": HOUR, "test_start": 340, "models": MODELS, "horizon": horizon,
        "lags": 3, "window": 6, "refit_every": 12, "max_refits": 20, "max_train_rows": 150,
        "seed": 7, "xgboost": SMALL,
    }  # fmt: skip
    args.update(kw)
    return walk_forward(values, valid, **args)  # type: ignore[arg-type]


@pytest.mark.extra("forecast")  # every model, xgboost included
@pytest.mark.parametrize("horizon", [1, 3])
@pytest.mark.slow
def test_no_future_value_reaches_a_prediction(horizon: int) -> None:
    """For any cut c, changing values[c:] leaves every prediction of a target t < c + horizon
    unchanged, for every model: neither the features of t nor the model refitted at the
    start of t's block (on a subsample of the past) see a value at or after c."""
    n = 400  # 16.7 days of hours: the week lag (168) is there before the test span
    values, valid = series(n, horizon)
    base = run(values, valid, horizon)
    assert base.block == 12
    assert base.refits == 5  # starts 340, 352, 364, 376, 388
    assert set(base.predictions) == set(MODELS)
    starts = range(340, n, base.block)
    # cuts right after what each refit may see (c = s - horizon + 1), at block starts,
    # inside blocks, and the first target of the test span
    cuts = sorted({s - horizon + 1 for s in starts} | set(starts) | {345, 357, 371, 399})
    rng = np.random.default_rng(99)
    for cut in cuts:
        changed = values.copy()
        changed[cut:] = rng.poisson(500, n - cut)  # ten times the load
        after = run(changed, valid, horizon)
        np.testing.assert_array_equal(after.targets, base.targets)
        seen = base.targets < cut + horizon
        assert seen.any()
        for name in MODELS:
            np.testing.assert_array_equal(
                after.predictions[name][seen], base.predictions[name][seen], err_msg=name
            )
        # later targets do change (the test would catch a model ignoring its input)
        if cut + horizon + 1 < n:
            later = base.targets >= cut + horizon
            for name in ("last", "xgboost", "linear"):
                assert not np.array_equal(
                    after.predictions[name][later], base.predictions[name][later]
                )


def test_a_refit_sees_every_target_observed_before_its_block() -> None:
    """Changing y[s - horizon], the newest label the refit at block start s may use,
    changes the linear model's predictions in that block even where no feature holds
    it: refits are not stale. Earlier predictions stay as they were."""
    horizon = 2
    values, valid = series(400, 5)
    valid[:] = True
    kw = {"max_train_rows": 10_000, "models": ("linear",)}
    base = run(values, valid, horizon, **kw)
    s = 364  # a block start; the block is s .. s + 11
    changed = values.copy()
    changed[s - horizon] += 300.0
    after = run(changed, valid, horizon, **kw)
    # lags and the rolling window of target t cover t - 7 .. t - 2: s - 2 is in none for t >= s + 6
    model_only = (base.targets >= s + 6) & (base.targets < s + base.block)
    assert model_only.sum() == 6
    assert (
        np.abs(after.predictions["linear"] - base.predictions["linear"])[model_only] > 1e-9
    ).all()
    earlier = base.targets < s
    np.testing.assert_array_equal(
        after.predictions["linear"][earlier], base.predictions["linear"][earlier]
    )


def test_targets_are_the_valid_intervals_of_the_test_span_and_rules_are_exact() -> None:
    values, valid = series(400, 3)
    out = run(values, valid, 1, models=("last", "seasonal_day", "seasonal_week", "moving_average"))
    np.testing.assert_array_equal(out.targets, np.flatnonzero(valid[340:]) + 340)
    t = out.targets
    np.testing.assert_array_equal(out.predictions["last"], values[t - 1])
    np.testing.assert_array_equal(out.predictions["seasonal_day"], values[t - 24])
    np.testing.assert_array_equal(out.predictions["seasonal_week"], values[t - 168])
    expected = np.array([values[j - 6 : j].mean() for j in t])
    np.testing.assert_allclose(out.predictions["moving_average"], expected)
    # horizon 30 hours: the seasonal lag is two days back
    out = run(values, valid, 30, models=("seasonal_day", "last"))
    np.testing.assert_array_equal(out.predictions["seasonal_day"], values[out.targets - 48])
    np.testing.assert_array_equal(out.predictions["last"], values[out.targets - 30])
    assert moving_average(np.arange(10.0), np.array([9]), 2, 3)[0] == pytest.approx(6.0)


def test_predictions_are_clipped_at_zero_and_bad_calls_raise() -> None:
    values = np.zeros(400)
    values[::24] = 100.0  # a spike a day: the linear fit goes below zero elsewhere
    out = run(values, np.ones(400, bool), 1, models=("linear",))
    assert (out.predictions["linear"] >= 0).all()
    with pytest.raises(ValueError, match="no training rows"):
        run(values, np.ones(400, bool), 1, test_start=first_row(horizon=1, lags=3, window=6))
    with pytest.raises(ValueError, match="seasonal_week needs 168 intervals"):
        run(values, np.ones(400, bool), 1, test_start=100, models=("seasonal_week",))
    with pytest.raises(ValueError, match="unknown model"):
        run(values, np.ones(400, bool), 1, models=("prophet",))


def test_block_size() -> None:
    assert block_size(1000, refit_every=144, max_refits=8) == 144
    assert block_size(76_680, refit_every=1440, max_refits=8) == 9585
    assert block_size(10, refit_every=0, max_refits=0) == 10


def test_nmae_and_nmse_on_hand_computed_examples() -> None:
    y = np.array([1.0, 2.0, 3.0])
    yhat = np.array([2.0, 2.0, 1.0])
    assert nmae(y, yhat) == pytest.approx(3 / 6)  # (1 + 0 + 2) / (1 + 2 + 3)
    assert nmse(y, yhat) == pytest.approx(5 / 2)  # (1 + 0 + 4) / ((1-2)^2 + 0 + (3-2)^2)
    assert nmae(y, y) == 0.0
    assert nmse(y, y) == 0.0
    assert nmse(y, np.full(3, 2.0)) == pytest.approx(1.0)  # always the mean: no skill
    assert nmae(np.array([-2.0, 2.0]), np.zeros(2)) == pytest.approx(1.0)  # |y| in the total


def test_nmae_and_nmse_are_none_without_a_denominator() -> None:
    empty = np.array([])
    assert nmae(empty, empty) is None
    assert nmse(empty, empty) is None
    assert nmae(np.zeros(4), np.ones(4)) is None
    assert nmse(np.full(4, 3.0), np.ones(4)) is None  # constant actuals
    assert nmae(np.full(4, 3.0), np.ones(4)) == pytest.approx(2 / 3)
