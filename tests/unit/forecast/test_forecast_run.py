"""run_forecast: skips with reasons, clear errors, primary fallback, files round trip,
determinism, and what happens without XGBoost."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import orjson
import polars as pl
import pytest

from burstlab.core.errors import InputError
from burstlab.forecast import (
    XGBoostParams,
    load_predictions,
    run_forecast,
    write_forecast,
)
from burstlab.forecast.run import Skip
from burstlab.workload.synthetic import synthetic_trace

DAY = 86_400
SMALL = XGBoostParams(n_estimators=20, max_depth=3)
TOO_SHORT_120M = "the trace spans 2.99 days: 120m gives 36 intervals, at least 48 needed"
LONGER = "burstlab generate --synthetic --duration 30d -o trace.parquet"
NO_XGBOOST = "xgboost is not installed (install it with: pip install 'burstlab[forecast]')"
RULES = ("last", "seasonal_day", "seasonal_week", "moving_average")


@pytest.fixture(scope="module")
def three_days() -> pl.DataFrame:
    return synthetic_trace(3 * DAY, rps=0.05, seed=3)


def table(arrivals: list[float]) -> pl.DataFrame:
    n = len(arrivals)
    return pl.DataFrame(
        {"arrival_s": arrivals, "input_tokens": [100] * n, "output_tokens": [20] * n}
    )


def test_what_cannot_be_done_is_skipped_with_a_reason(three_days: pl.DataFrame) -> None:
    result = run_forecast(
        three_days, granularity_s=600, granularities=(420, 600, 7200), models=RULES,
        series=("requests",),
    )  # fmt: skip
    assert result.span_s == pytest.approx(3 * DAY, abs=600)
    assert Skip(TOO_SHORT_120M, granularity="120m") in result.skipped
    assert (
        Skip("needs at least 2 weeks of data; the trace spans 2.99 days", model="seasonal_week")
        in result.skipped
    )
    assert (
        Skip("7m does not divide a day", granularity="7m", model="seasonal_day") in result.skipped
    )
    assert len(result.skipped) == 3
    assert set(result.metrics) == {"7m", "10m"}
    assert list(result.metrics["7m"]["requests"]) == ["last", "moving_average"]
    assert list(result.metrics["10m"]["requests"]) == ["last", "seasonal_day", "moving_average"]
    assert result.notes == []
    skipped = result.metrics_json()["skipped"]
    assert {"granularity": "120m", "model": None, "series": None,
            "reason": TOO_SHORT_120M} in skipped  # fmt: skip
    # the test span starts at a whole 10m interval (the coarsest); 7m does not divide it,
    # so 7m starts at its first interval after that second
    firsts = dict(
        result.predictions.group_by("granularity_s").agg(pl.col("start_s").min()).iter_rows()
    )
    assert result.test_start_s % 600 == 0
    assert firsts[600] == result.test_start_s
    assert firsts[420] == 420 * np.ceil(result.test_start_s / 420) > result.test_start_s


def test_a_seasonal_model_needs_a_period_before_the_test_span() -> None:
    trace = synthetic_trace(2.2 * DAY, rps=0.05, seed=1)
    result = run_forecast(
        trace, granularity_s=600, granularities=(600,), models=("last", "seasonal_day"),
        series=("requests",), test_fraction=0.6,
    )  # fmt: skip
    assert result.skipped == [
        Skip(
            "needs 24.0 h of history before the test span", granularity="10m", model="seasonal_day"
        )
    ]
    assert list(result.metrics["10m"]["requests"]) == ["last"]


def test_a_series_with_too_little_scored_history_is_skipped() -> None:
    # a request every fifth minute: the means are defined in 1 interval of 5
    sparse = table([30.0 + 60 * k for k in range(0, 96, 5)])
    result = run_forecast(sparse, granularity_s=60, granularities=(60,), models=("last",))
    reason = "13 scored intervals of history before the test span, at least 24 needed"
    for name in ("input_mean", "output_mean"):
        assert Skip(reason, granularity="1m", series=name) in result.skipped
    assert set(result.metrics["1m"]) == {"requests", "tokens"}
    with pytest.raises(InputError, match=f"nothing could be evaluated: {reason}"):
        run_forecast(sparse, granularities=(60,), models=("last",), series=("input_mean",))


def test_a_trace_too_short_for_everything_says_so_with_a_hint() -> None:
    half_hour = table(list(np.linspace(0.0, 1800.0, 300)))
    with pytest.raises(InputError) as err:
        run_forecast(half_hour)
    assert str(err.value) == (
        "the trace spans 30 min, too short to forecast: the finest granularity asked, 1m, "
        "gives 30 intervals and at least 48 are needed"
    )
    # 1m was asked already: only a longer trace helps
    assert err.value.hint == f"give a longer trace, e.g. {LONGER}"
    five_hours = table(list(np.linspace(0.0, 5 * 3600.0, 300)))
    expected = "spans 5.0 h, too short to forecast: the finest granularity asked, 10m, gives 30"
    with pytest.raises(InputError, match=re.escape(expected)) as err:
        run_forecast(five_hours, granularity_s=600, granularities=(600, 3600))
    assert err.value.hint is not None
    assert "--granularities 1m" in err.value.hint
    assert "burstlab generate --synthetic --duration 30d" in err.value.hint


def test_bad_input_is_an_input_error(three_days: pl.DataFrame) -> None:
    with pytest.raises(InputError, match="holds no requests"):
        run_forecast(table([]))
    with pytest.raises(InputError, match=r"^horizon: "):
        run_forecast(three_days, horizon=0)
    with pytest.raises(InputError, match="unknown model prophet"):
        run_forecast(three_days, models=("xgboost", "prophet"))
    with pytest.raises(InputError, match="unknown series queue"):
        run_forecast(three_days, series=("queue",))
    with pytest.raises(InputError, match="no model can run: seasonal_week: needs at least 2 weeks"):
        run_forecast(three_days, models=("seasonal_week",))


def test_an_impossible_primary_granularity_falls_back_with_a_note(three_days: pl.DataFrame) -> None:
    lines: list[str] = []
    result = run_forecast(
        three_days, granularity_s=7200, granularities=(600, 3600), models=("last", "linear"),
        series=("requests", "tokens"), progress=lines.append,
    )  # fmt: skip
    assert result.primary == "60m"
    assert result.primary_s == 3600
    assert result.notes == [
        "120m is not possible on this trace: the primary granularity is 60m instead"
    ]
    meta = result.forecast_json()
    assert meta["primary_granularity_s"] == 3600
    assert meta["requested_granularity_s"] == 7200
    assert set(meta["best"]) == {"requests", "tokens"}
    assert "10m: building the series" in lines
    assert "60m: tokens (last, linear)" in lines


@pytest.fixture(scope="module")
def written(three_days: pl.DataFrame, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    result = run_forecast(
        three_days, granularity_s=600, granularities=(600, 3600), xgboost=SMALL, seed=2
    )
    out = tmp_path_factory.mktemp("fc")
    paths = write_forecast(result, out)
    return result, out, paths


def test_written_files_load_back(written) -> None:  # type: ignore[no-untyped-def]
    result, out, paths = written
    assert set(paths) == {"predictions", "metrics", "forecast"}
    assert all(p.is_file() and p.parent == out for p in paths.values())
    metrics = orjson.loads((out / "metrics.json").read_bytes())
    meta = orjson.loads((out / "forecast.json").read_bytes())
    assert metrics["primary"] == meta["primary"] == "10m"
    assert metrics["granularity_s"] == {"10m": 600, "60m": 3600}
    scores = metrics["granularities"]["10m"]["requests"]
    best = min(scores, key=lambda m: scores[m]["nmae"])
    assert meta["best"]["requests"]["model"] == best == result.best["requests"]
    assert meta["best"]["requests"]["nmae"] == scores[best]["nmae"]

    loaded = load_predictions(out)  # the primary granularity, the best model, requests
    expected = result.predictions.filter(
        (pl.col("granularity_s") == 600)
        & (pl.col("series") == "requests")
        & (pl.col("model") == best)
    ).sort("start_s")
    assert loaded.height == scores[best]["n"] > 0
    assert loaded.equals(expected)
    assert loaded.schema == pl.read_parquet(out / "predictions.parquet").schema

    tokens = load_predictions(out, series="tokens", model="last", granularity_s=3600)
    assert set(tokens["model"].to_list()) == {"last"}
    assert set(tokens["granularity_s"].to_list()) == {3600}
    assert tokens["start_s"].is_sorted()


@pytest.mark.extra("forecast")  # the models listed include xgboost
def test_loading_what_is_not_there_names_the_path(written, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, out, _ = written
    with pytest.raises(InputError) as err:
        load_predictions(out, model="prophet")
    assert str(err.value) == (
        f"{out}: no predictions of 'requests' by 'prophet' at 10m; models: xgboost, last, "
        "seasonal_day, moving_average, linear"
    )
    with pytest.raises(InputError) as err:
        load_predictions(out, granularity_s=420)
    assert str(err.value) == f"{out}: no predictions at 7m; evaluated: 10m, 60m"
    with pytest.raises(InputError) as err:
        load_predictions(out, series="queue")
    assert str(err.value) == f"{out}: no predictions of 'queue' at 10m"
    missing = tmp_path / "missing"
    with pytest.raises(InputError) as err:
        load_predictions(missing)
    assert str(err.value) == f"{missing / 'forecast.json'}: missing: not a forecast directory?"
    assert err.value.hint == "run burstlab forecast first"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "forecast.json").write_text("{not json")
    with pytest.raises(InputError, match=r"forecast\.json: not valid JSON"):
        load_predictions(broken)


@pytest.mark.extra("forecast")
def test_the_same_seed_gives_the_same_forecast(three_days: pl.DataFrame) -> None:
    assert synthetic_trace(DAY, rps=0.02, seed=5).equals(synthetic_trace(DAY, rps=0.02, seed=5))
    assert not synthetic_trace(DAY, rps=0.02, seed=5).equals(synthetic_trace(DAY, rps=0.02, seed=6))
    kw = {"granularity_s": 600, "granularities": (600,), "series": ("requests",),
          "models": ("xgboost", "last", "linear"), "xgboost": SMALL,
          "max_train_rows": 200}  # fmt: skip
    one = run_forecast(three_days, seed=4, **kw)  # type: ignore[arg-type]
    two = run_forecast(three_days, seed=4, **kw)  # type: ignore[arg-type]
    assert one.predictions.equals(two.predictions)
    assert one.metrics == two.metrics
    other = run_forecast(three_days, seed=5, **kw)  # type: ignore[arg-type]

    def model(result, name: str) -> np.ndarray:  # type: ignore[no-untyped-def]
        return result.predictions.filter(pl.col("model") == name)["predicted"].to_numpy()

    assert not np.array_equal(model(one, "xgboost"), model(other, "xgboost"))
    np.testing.assert_array_equal(model(one, "last"), model(other, "last"))


def test_without_xgboost_the_others_are_still_scored(
    three_days: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        return None if name == "xgboost" else real(name, *args, **kwargs)  # type: ignore[arg-type]

    def no_fit(*_: object, **__: object) -> None:
        raise AssertionError("xgboost fitted though missing")

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr("burstlab.forecast.evaluate.fit_xgboost", no_fit)
    result = run_forecast(three_days, granularity_s=600, granularities=(600,), series=("requests",))
    assert result.skipped[0] == Skip(NO_XGBOOST, model="xgboost")
    assert [s.model for s in result.skipped] == ["xgboost", "seasonal_week"]  # 3 days only
    scores = result.metrics["10m"]["requests"]
    assert list(scores) == ["last", "seasonal_day", "moving_average", "linear"]
    assert all(v["nmae"] is not None for v in scores.values())
    assert result.best["requests"] in scores
    with pytest.raises(InputError, match=re.escape(f"no model can run: xgboost: {NO_XGBOOST}")):
        run_forecast(three_days, models=("xgboost",))


def test_a_primary_granularity_with_nothing_scored_falls_back_with_a_note() -> None:
    # 50 h, 60% tested: at 60m 13 intervals of history (6 .. 18; 24 needed), at 10m plenty
    trace = synthetic_trace(50 * 3600, rps=0.05, seed=2)
    result = run_forecast(
        trace, granularity_s=3600, granularities=(600,), models=("last",), series=("requests",),
        test_fraction=0.6,
    )  # fmt: skip
    assert (
        Skip(
            "13 scored intervals of history before the test span, at least 24 needed",
            granularity="60m",
            series="requests",
        )
        in result.skipped
    )
    assert result.notes == ["nothing was scored at 60m: the primary granularity is 10m instead"]
    assert result.primary == "10m"
    assert result.best == {"requests": "last"}
