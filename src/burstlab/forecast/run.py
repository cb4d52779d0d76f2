"""``run_forecast``: every series, model and granularity of a trace, walk-forward scored.

A trace is cut into per-interval series (:mod:`burstlab.forecast.series`) at
each granularity asked for; each series is predicted over a common test span
(the last ``test_fraction`` of the trace, starting at a whole interval of the
coarsest granularity evaluated, so at the same second at every granularity that
divides it; one that does not starts at its first interval after that second)
by every model (:mod:`burstlab.forecast.models`) under the
walk-forward rules of :mod:`burstlab.forecast.evaluate`, and scored with NMAE
and NMSE. One granularity is *primary* (the one a plan acts on); the best
model of each series there is the one with the lowest NMAE.

What cannot be done is skipped with a reason, never silently: a granularity
that gives fewer than :data:`MIN_INTERVALS` intervals, a seasonal model without
two periods of data, XGBoost when it is not installed. When nothing at all can
be done an :class:`~burstlab.core.errors.InputError` says why.

Output files (:func:`write_forecast`): ``predictions.parquet``,
``metrics.json`` and ``forecast.json``; :func:`load_predictions` reads them
back. The HTML report is :func:`burstlab.report.forecast.render_forecast`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from burstlab.core.errors import InputError, invalid
from burstlab.core.files import atomic_file, read_json_object, write_json
from burstlab.forecast.evaluate import nmae, nmse, walk_forward
from burstlab.forecast.features import first_row, period_intervals, seasonal_lag
from burstlab.forecast.models import FITTED, MODELS, XGBoostParams, xgboost_missing
from burstlab.forecast.series import (
    DAY_S,
    SERIES,
    WEEK_S,
    granularity_label,
    interval_count,
    interval_series,
    span_text,
)

#: Fewest intervals a granularity must give to be evaluated.
MIN_INTERVALS = 48
#: Fewest scored training targets before the test span.
MIN_TRAIN = 24
#: The granularities of the table when none are given: 1, 5, 10, 30 and 60 minutes.
DEFAULT_GRANULARITIES = (60, 300, 600, 1800, 3600)
#: Version of the files :func:`write_forecast` writes.
FORMAT_VERSION = 1

PREDICTION_SCHEMA = {
    "granularity_s": pl.Int64,
    "series": pl.String,
    "model": pl.String,
    "start_s": pl.Float64,
    "actual": pl.Float64,
    "predicted": pl.Float64,
}


class ForecastSettings(BaseModel):
    """What :func:`run_forecast` was asked to do (saved in ``forecast.json``).

    Granularities, ``refit_every_s`` and the clock are in seconds; ``horizon``,
    ``lags`` and ``window`` in intervals of each granularity. ``day_offset_s``
    is the time of day at ``arrival_s`` = 0 and ``weekday0`` its weekday
    (0 = Monday); by default the trace starts at midnight of a Monday.
    """

    model_config = ConfigDict(extra="forbid")

    kind: str = "forecast"
    granularity_s: int = Field(600, gt=0)
    granularities: tuple[int, ...] = DEFAULT_GRANULARITIES
    horizon: int = Field(1, ge=1)
    lags: int = Field(3, ge=1, le=500)
    window: int = Field(6, ge=2, le=10_000)
    models: tuple[str, ...] = MODELS
    series: tuple[str, ...] = SERIES
    test_fraction: float = Field(0.25, gt=0, lt=1)
    refit_every_s: float = Field(DAY_S, gt=0)
    max_refits: int = Field(8, ge=1)
    max_train_rows: int = Field(50_000, ge=MIN_TRAIN)
    seed: int = 0
    day_offset_s: float = Field(0.0, ge=0, lt=DAY_S)
    weekday0: int = Field(0, ge=0, le=6)

    @field_validator("granularities")
    @classmethod
    def _positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(g <= 0 for g in value):
            raise ValueError("granularities must be positive whole seconds")
        return tuple(sorted(set(value)))

    @field_validator("models")
    @classmethod
    def _known_models(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _known(value, MODELS, "model")

    @field_validator("series")
    @classmethod
    def _known_series(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _known(value, SERIES, "series")


def _known(value: tuple[str, ...], known: tuple[str, ...], what: str) -> tuple[str, ...]:
    unknown = [v for v in value if v not in known]
    if unknown or not value:
        raise ValueError(f"unknown {what} {', '.join(unknown) or '(none)'}; known: {known}")
    return tuple(k for k in known if k in value)  # canonical order, no duplicates


@dataclass(frozen=True, slots=True)
class Skip:
    """Something not evaluated and why; ``granularity`` or ``model`` None means all."""

    reason: str
    granularity: str | None = None
    model: str | None = None
    series: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {
            "granularity": self.granularity,
            "model": self.model,
            "series": self.series,
            "reason": self.reason,
        }


@dataclass(slots=True)
class ForecastResult:
    """Everything :func:`run_forecast` found; :func:`write_forecast` saves it.

    ``metrics[label][series][model]`` holds ``nmae``, ``nmse`` and ``n`` (the
    intervals scored); ``best[series]`` the model with the lowest NMAE at the
    primary granularity. ``predictions`` has the columns of
    :data:`PREDICTION_SCHEMA`, one row per granularity, series, model and
    predicted interval (``start_s`` on the trace's ``arrival_s`` axis;
    ``predicted`` for ``requests`` is a request count).
    """

    settings: ForecastSettings
    primary_s: int
    span_s: float
    test_start_s: float
    metrics: dict[str, dict[str, dict[str, dict[str, float | int | None]]]]
    predictions: pl.DataFrame
    best: dict[str, str]
    skipped: list[Skip] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    refits: dict[str, dict[str, int]] = field(default_factory=dict)
    source: str = "table"
    requests: int = 0

    @property
    def primary(self) -> str:
        return granularity_label(self.primary_s)

    def metrics_json(self) -> dict[str, Any]:
        """The content of ``metrics.json``."""
        return {
            "kind": "forecast-metrics",
            "version": FORMAT_VERSION,
            "primary": self.primary,
            "granularities": self.metrics,
            "granularity_s": {granularity_label(g): g for g in self._evaluated()},
            "horizon": self.settings.horizon,
            "lags": self.settings.lags,
            "window": self.settings.window,
            "test_fraction": self.settings.test_fraction,
            "test_start_s": self.test_start_s,
            "span_s": self.span_s,
            "refits": self.refits,
            "definitions": {
                "nmae": "sum(|y - yhat|) / sum(|y|) over the intervals scored",
                "nmse": "sum((y - yhat)^2) / sum((y - mean(y))^2) over the intervals scored",
            },
            "skipped": [s.as_dict() for s in self.skipped],
        }

    def forecast_json(self) -> dict[str, Any]:
        """The content of ``forecast.json``: settings and the best model per series."""
        here = self.metrics.get(self.primary, {})
        return {
            "kind": "forecast",
            "version": FORMAT_VERSION,
            "source": self.source,
            "requests": self.requests,
            "settings": self.settings.model_dump(mode="json"),
            "primary": self.primary,
            "primary_granularity_s": self.primary_s,
            "requested_granularity_s": self.settings.granularity_s,
            "span_s": self.span_s,
            "test_start_s": self.test_start_s,
            "best": {s: {"model": m, **here.get(s, {}).get(m, {})} for s, m in self.best.items()},
            "notes": self.notes,
            "skipped": [s.as_dict() for s in self.skipped],
        }

    def _evaluated(self) -> list[int]:
        return sorted({int(g) for g in self.predictions["granularity_s"].unique().to_list()})


def run_forecast(
    table: pl.DataFrame,
    *,
    granularity_s: int = 600,
    horizon: int = 1,
    lags: int = 3,
    window: int = 6,
    granularities: tuple[int, ...] = DEFAULT_GRANULARITIES,
    models: tuple[str, ...] | None = None,
    series: tuple[str, ...] = SERIES,
    test_fraction: float = 0.25,
    refit_every_s: float = DAY_S,
    max_refits: int = 8,
    max_train_rows: int = 50_000,
    seed: int = 0,
    day_offset_s: float = 0.0,
    weekday0: int = 0,
    xgboost: XGBoostParams | None = None,
    source: str = "table",
    progress: Callable[[str], None] | None = None,
) -> ForecastResult:
    """Forecast the per-interval series of ``table`` and score every model walk-forward.

    ``granularity_s`` is the primary granularity; it joins ``granularities``
    (the table across granularities). ``horizon``, ``lags`` (past values as
    features) and ``window`` (rolling mean and std, and the moving average)
    count intervals. ``models`` defaults to all of :data:`MODELS`. The test
    span is the last ``test_fraction`` of the trace. ``day_offset_s`` and
    ``weekday0`` place ``arrival_s`` = 0 on the clock (default: midnight of a
    Monday). ``source`` names the trace in the saved files; ``progress`` is
    called with a short line before each step.

    Raises :class:`~burstlab.core.errors.InputError` when nothing can be
    evaluated (too short a trace, no usable model).
    """
    try:
        settings = ForecastSettings(
            granularity_s=granularity_s, granularities=(*granularities, granularity_s),
            horizon=horizon, lags=lags, window=window,
            models=MODELS if models is None else models, series=series,
            test_fraction=test_fraction, refit_every_s=refit_every_s, max_refits=max_refits,
            max_train_rows=max_train_rows, seed=seed, day_offset_s=day_offset_s % DAY_S,
            weekday0=weekday0,
        )  # fmt: skip
    except ValidationError as exc:
        raise invalid(exc) from None
    if table.height == 0:
        raise InputError("the trace holds no requests: nothing to forecast")
    say = progress or (lambda _: None)
    span = float(table["arrival_s"].max())  # type: ignore[arg-type]
    skipped: list[Skip] = []
    notes: list[str] = []
    usable = _usable_granularities(settings, span, skipped)
    primary = settings.granularity_s
    if primary not in usable:
        primary = min(usable, key=lambda g: abs(math.log(g / settings.granularity_s)))
        notes.append(
            f"{granularity_label(settings.granularity_s)} is not possible on this trace: "
            f"the primary granularity is {granularity_label(primary)} instead"
        )
    coarsest = max(usable)
    test_start_s = math.floor(span * (1 - settings.test_fraction) / coarsest) * coarsest
    chosen = _available_models(settings, span, skipped)
    frames: list[pl.DataFrame] = []
    metrics: dict[str, dict[str, dict[str, dict[str, float | int | None]]]] = {}
    refits: dict[str, dict[str, int]] = {}
    for g in usable:
        label = granularity_label(g)
        say(f"{label}: building the series")
        data = interval_series(table, g)
        test_start = math.ceil(test_start_s / g)
        lo = first_row(horizon=settings.horizon, lags=settings.lags, window=settings.window)
        here = _models_at(settings, chosen, g, test_start, skipped)
        for name in settings.series:
            history = data.valid[name][lo : test_start - settings.horizon + 1]
            trained = int(np.count_nonzero(history))
            if trained < MIN_TRAIN:
                skipped.append(
                    Skip(
                        f"{trained} scored intervals of history before the test span, "
                        f"at least {MIN_TRAIN} needed",
                        granularity=label,
                        series=name,
                    )
                )
                continue
            say(f"{label}: {name} ({', '.join(here)})")
            run = walk_forward(
                data.values[name], data.valid[name], granularity_s=g, test_start=test_start,
                models=here, horizon=settings.horizon, lags=settings.lags,
                window=settings.window, refit_every=max(1, round(settings.refit_every_s / g)),
                max_refits=settings.max_refits, max_train_rows=settings.max_train_rows,
                seed=settings.seed, day_offset_s=settings.day_offset_s,
                weekday0=settings.weekday0, xgboost=xgboost,
            )  # fmt: skip
            if any(m in FITTED for m in here):
                refits[label] = {"block_intervals": run.block, "refits": run.refits}
            actual = data.values[name][run.targets]
            scores = metrics.setdefault(label, {}).setdefault(name, {})
            for model, predicted in run.predictions.items():
                scores[model] = {
                    "nmae": nmae(actual, predicted),
                    "nmse": nmse(actual, predicted),
                    "n": int(actual.size),
                }
                frames.append(
                    _frame(
                        g, name, model, start=run.targets * float(g), actual=actual,
                        predicted=predicted,
                    )
                )  # fmt: skip
    if not frames:
        raise InputError(
            "nothing could be evaluated: "
            + "; ".join(s.reason for s in skipped if s.series is not None)[:500]
        )
    predictions = pl.concat(frames, how="vertical")
    if granularity_label(primary) not in metrics:
        evaluated = sorted(metrics, key=lambda lab: abs(math.log(_seconds(lab) / primary)))
        notes.append(
            f"nothing was scored at {granularity_label(primary)}: the primary granularity "
            f"is {evaluated[0]} instead"
        )
        primary = _seconds(evaluated[0])
    return ForecastResult(
        settings=settings,
        primary_s=primary,
        span_s=span,
        test_start_s=float(test_start_s),
        metrics=metrics,
        predictions=predictions,
        best=_best(metrics[granularity_label(primary)]),
        skipped=skipped,
        notes=notes,
        refits=refits,
        source=source,
        requests=table.height,
    )


def _seconds(label: str) -> int:
    return int(label[:-1]) * (60 if label.endswith("m") else 1)


def _frame(
    g: int, name: str, model: str, *, start: np.ndarray, actual: np.ndarray, predicted: np.ndarray
) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "granularity_s": pl.repeat(g, start.size, eager=True, dtype=pl.Int64),
            "series": pl.repeat(name, start.size, eager=True, dtype=pl.String),
            "model": pl.repeat(model, start.size, eager=True, dtype=pl.String),
            "start_s": start,
            "actual": actual,
            "predicted": predicted,
        },
        schema=PREDICTION_SCHEMA,
    )


def _usable_granularities(
    settings: ForecastSettings, span: float, skipped: list[Skip]
) -> list[int]:
    """Granularities that give enough intervals; an InputError when none does."""
    usable = []
    for g in settings.granularities:
        n = interval_count(span, g)
        if n >= MIN_INTERVALS:
            usable.append(g)
            continue
        skipped.append(
            Skip(
                f"the trace spans {span_text(span)}: {granularity_label(g)} gives {n} "
                f"intervals, at least {MIN_INTERVALS} needed",
                granularity=granularity_label(g),
            )
        )
    if not usable:
        finest = min(settings.granularities)
        longer = "burstlab generate --synthetic --duration 30d -o trace.parquet"
        raise InputError(
            f"the trace spans {span_text(span)}, too short to forecast: the finest "
            f"granularity asked, {granularity_label(finest)}, gives "
            f"{interval_count(span, finest)} intervals and at least {MIN_INTERVALS} are needed",
            # 1m is only worth suggesting when something coarser was asked
            hint=f"give a finer granularity (--granularities 1m) or a longer trace, e.g. {longer}"
            if finest > 60
            else f"give a longer trace, e.g. {longer}",
        )
    return usable


def _available_models(
    settings: ForecastSettings, span: float, skipped: list[Skip]
) -> tuple[str, ...]:
    """The asked-for models that this trace and this install allow at all."""
    chosen = []
    for name in settings.models:
        reason = None
        if name == "xgboost":
            reason = xgboost_missing()
        elif name == "seasonal_day" and span < 2 * DAY_S:
            reason = f"needs at least 2 days of data; the trace spans {span_text(span)}"
        elif name == "seasonal_week" and span < 2 * WEEK_S:
            reason = f"needs at least 2 weeks of data; the trace spans {span_text(span)}"
        if reason is None:
            chosen.append(name)
        else:
            skipped.append(Skip(reason, model=name))
    if not chosen:
        raise InputError(
            "no model can run: " + "; ".join(f"{s.model}: {s.reason}" for s in skipped if s.model)
        )
    return tuple(chosen)


def _models_at(
    settings: ForecastSettings,
    chosen: tuple[str, ...],
    g: int,
    test_start: int,
    skipped: list[Skip],
) -> tuple[str, ...]:
    """The models that can run at granularity ``g`` (a seasonal one needs its period)."""
    here = []
    for name in chosen:
        if name in ("seasonal_day", "seasonal_week"):
            period_s = DAY_S if name == "seasonal_day" else WEEK_S
            lag = seasonal_lag(period_intervals(period_s, g), settings.horizon)
            reason = None
            if lag is None:
                period = name.removeprefix("seasonal_")
                reason = f"{granularity_label(g)} does not divide a {period}"
            elif test_start < lag:
                reason = f"needs {span_text(lag * g)} of history before the test span"
            if reason is not None:
                skipped.append(Skip(reason, granularity=granularity_label(g), model=name))
                continue
        here.append(name)
    return tuple(here)


def _best(scores: dict[str, dict[str, dict[str, float | int | None]]]) -> dict[str, str]:
    best = {}
    for name, by_model in scores.items():
        ranked = [(float(v["nmae"]), m) for m, v in by_model.items() if v["nmae"] is not None]
        if ranked:
            best[name] = min(ranked)[1]
    return best


def write_forecast(result: ForecastResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``predictions.parquet``, ``metrics.json`` and ``forecast.json`` to ``out_dir``.

    Each file is written atomically. The HTML report is written by
    :func:`burstlab.report.forecast.render_forecast` (a layer above this one).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / "predictions.parquet") as fh:
        result.predictions.write_parquet(fh)
    return {
        "predictions": out / "predictions.parquet",
        "metrics": write_json(out / "metrics.json", result.metrics_json()),
        "forecast": write_json(out / "forecast.json", result.forecast_json()),
    }


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a forecast directory, or an InputError naming the file."""
    data = read_json_object(path)
    if data is None:
        raise InputError(
            "missing: not a forecast directory?", path=str(path), hint="run burstlab forecast first"
        )
    return data


def load_predictions(
    out_dir: str | Path,
    *,
    series: str = "requests",
    model: str | None = None,
    granularity_s: int | None = None,
) -> pl.DataFrame:
    """The walk-forward predictions of one series from a ``burstlab forecast`` directory.

    ``granularity_s`` defaults to the primary granularity and ``model`` to the
    model with the lowest NMAE for ``series`` at that granularity. Rows are
    sorted by ``start_s``; columns as in :data:`PREDICTION_SCHEMA`.
    """
    out = Path(out_dir)
    meta = read_json(out / "forecast.json")
    metrics = read_json(out / "metrics.json")
    g = int(granularity_s if granularity_s is not None else meta["primary_granularity_s"])
    label = granularity_label(g)
    scores = metrics.get("granularities", {}).get(label)
    if not isinstance(scores, dict):
        raise InputError(
            f"no predictions at {label}; evaluated: {', '.join(metrics.get('granularities', {}))}",
            path=str(out),
        )
    by_model = scores.get(series)
    if not isinstance(by_model, dict) or not by_model:
        raise InputError(f"no predictions of {series!r} at {label}", path=str(out))
    if model is None:
        ranked = [(v["nmae"], m) for m, v in by_model.items() if v.get("nmae") is not None]
        if not ranked:
            raise InputError(f"no model of {series!r} at {label} has an NMAE", path=str(out))
        model = min(ranked)[1]
    elif model not in by_model:
        raise InputError(
            f"no predictions of {series!r} by {model!r} at {label}; models: {', '.join(by_model)}",
            path=str(out),
        )
    return (
        pl.scan_parquet(out / "predictions.parquet")
        .filter(
            (pl.col("granularity_s") == g),
            (pl.col("series") == series),
            (pl.col("model") == model),
        )
        .sort("start_s")
        .collect()
    )
