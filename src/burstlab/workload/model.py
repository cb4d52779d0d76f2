"""Fitted workload models: per-window Gamma arrivals, class mix, length distributions.

``fit`` summarises a trace into a small, versioned JSON model; ``sample`` draws
a workload of any duration and rate from it, seeded and vectorised. What is
kept: the share of zero gaps (requests logged in the same instant), the
Gamma shape/scale of the positive gaps and the rate of every window (default 20
min), so daily cycles and bursts survive; the share of each model x log type
class; per class, the request-length distribution (the best of Zipf,
lognormal, empirical by KS), the response length conditional on the request
length (empirical quantiles per request-length bin), and the failure
probability, and, where the class has sessions, turns per session and think
times. A session class's arrival events start sessions whose later turns follow
by sampled think times, with fewer events so the request rate still matches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import orjson
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from burstlab.analyze.gaps import detect_resolution
from burstlab.analyze.lengths import length_fit
from burstlab.core.errors import InputError, invalid
from burstlab.core.files import atomic_write
from burstlab.trace.schema import conform
from burstlab.workload.arrivals import (
    MultiscaleArrivals,
    WindowGammaArrivals,
    fit_multiscale,
    fit_window_gamma,
)
from burstlab.workload.fidelity import Reference, reference, upgrade_reference
from burstlab.workload.sessions import SessionModel, expand_sessions, fit_sessions

MODEL_VERSION = 2
#: What-if bounds: past them the gaps are all but zero (a burst of every request at once).
MAX_BURSTINESS = 10.0
MIN_GAP_SHAPE = 0.01
ArrivalKind = Literal["multiscale", "window-gamma"]
QUANTILES = 1001
RESPONSE_BINS = 16


class LengthModel(BaseModel):
    """A token-length distribution: the chosen form and an empirical quantile function.

    ``quantiles`` holds the values at probabilities ``0, 1/(Q-1), ..., 1``;
    the parametric forms use ``mu``/``sigma`` (lognormal) or ``exponent``/
    ``xmin`` (Zipf tail above ``xmin``, empirical below).
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["zipf", "lognormal", "empirical"]
    quantiles: list[float]
    mu: float | None = None
    sigma: float | None = None
    exponent: float | None = None
    xmin: int | None = None
    tail_share: float | None = None

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` token counts (>= 1), vectorised."""
        u = rng.random(n)
        q = np.asarray(self.quantiles)
        x = np.interp(u, np.linspace(0, 1, q.size), q)
        if self.kind == "lognormal" and self.mu is not None and self.sigma is not None:
            x = np.exp(self.mu + self.sigma * rng.standard_normal(n))
        elif self.kind == "zipf" and self.exponent and self.xmin and self.tail_share:
            tail = u >= 1 - self.tail_share
            v = (1 - u[tail]) / self.tail_share  # uniform on (0, 1]
            x[tail] = (self.xmin - 0.5) * v ** (-1 / (self.exponent - 1)) + 0.5
        out: np.ndarray = np.maximum(np.floor(x), 1).astype(np.int64)
        return out


def _quantiles(x: np.ndarray) -> list[float]:
    return np.quantile(x, np.linspace(0, 1, QUANTILES)).tolist() if x.size else [1.0, 1.0]


def length_model(x: np.ndarray) -> LengthModel:
    """The best-fitting form of ``x`` (see :mod:`burstlab.analyze.lengths`)."""
    fit = length_fit(x)
    model = LengthModel(kind=fit.best, quantiles=_quantiles(x))
    if fit.best == "lognormal" and fit.lognormal:
        model.mu, model.sigma = fit.lognormal.mu, fit.lognormal.sigma
    if fit.best == "zipf" and fit.zipf:
        model.exponent, model.xmin = fit.zipf.exponent, fit.zipf.xmin
        model.tail_share = fit.zipf.tail_share
    return model


class ResponseModel(BaseModel):
    """Response length given request length: empirical quantiles per request-length bin."""

    model_config = ConfigDict(extra="forbid")

    input_edges: list[float]
    quantiles: list[list[float]]

    def sample(self, rng: np.random.Generator, inputs: np.ndarray) -> np.ndarray:
        edges = np.asarray(self.input_edges)
        which = np.clip(
            np.searchsorted(edges, inputs, side="right") - 1, 0, len(self.quantiles) - 1
        )
        table = np.asarray(self.quantiles)
        pos = rng.random(inputs.size) * (table.shape[1] - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, table.shape[1] - 1)
        frac = pos - lo
        x = table[which, lo] * (1 - frac) + table[which, hi] * frac
        out: np.ndarray = np.maximum(np.floor(x), 1).astype(np.int64)
        return out


def response_model(inputs: np.ndarray, outputs: np.ndarray) -> ResponseModel:
    edges = np.unique(np.quantile(inputs, np.linspace(0, 1, RESPONSE_BINS + 1)))
    if edges.size < 2:
        edges = np.array([inputs.min(initial=1), inputs.max(initial=1) + 1], dtype=np.float64)
    which = np.clip(np.searchsorted(edges, inputs, side="right") - 1, 0, edges.size - 2)
    probs = np.linspace(0, 1, 101)
    overall = np.quantile(outputs, probs) if outputs.size else np.ones(probs.size)
    rows = [
        np.quantile(outputs[which == b], probs) if (which == b).sum() >= 20 else overall
        for b in range(edges.size - 1)
    ]
    return ResponseModel(input_edges=edges.tolist(), quantiles=[r.tolist() for r in rows])


class ClassModel(BaseModel):
    """One model x log type class: its share of requests, failures and lengths."""

    model_config = ConfigDict(extra="forbid")

    model: str | None
    log_type: Literal["conversation", "api"] | None
    share: float
    failure_probability: float
    request: LengthModel
    response: ResponseModel
    sessions: SessionModel | None = None

    @property
    def turns(self) -> float:
        """Mean requests per arrival event: a session's turns, else 1."""
        return self.sessions.mean_turns if self.sessions else 1.0


class WorkloadModel(BaseModel):
    """A fitted workload model (saved as JSON; ``version`` guards the format).

    ``arrivals`` is the multi-scale process (None in models of format version 1,
    which only had the per-window Gamma); ``window_gamma`` is the paper's
    per-window Gamma, kept for comparison.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["workload-model"] = "workload-model"
    version: int = MODEL_VERSION
    source: str
    duration_s: float = Field(gt=0)
    mean_rps: float = Field(gt=0)
    resolution_s: float | None = None
    arrivals: MultiscaleArrivals | None
    window_gamma: WindowGammaArrivals
    classes: list[ClassModel]
    reference: Reference

    @property
    def default_arrivals(self) -> ArrivalKind:
        """The multi-scale process where the model has one, else the per-window Gamma."""
        return "multiscale" if self.arrivals is not None else "window-gamma"

    def sample(
        self,
        *,
        duration_s: float | None = None,
        rps: float | None = None,
        seed: int = 0,
        burstiness: float = 1.0,
        shape: float | None = None,
        length_cap: int | None = None,
        arrivals: ArrivalKind | None = None,
    ) -> pl.DataFrame:
        """Draw a workload (canonical request table) from the model.

        ``duration_s`` defaults to the fitted span; ``rps`` sets the mean rate
        (multiscale: the source's process played faster or slower; window-gamma:
        every window's rate scaled, windows repeating when longer);
        ``burstiness`` divides the gap shapes (and, multiscale, multiplies the
        log-rate variances: 2 = burstier, same mean rate); ``shape`` fixes the
        gap shape; ``length_cap`` caps lengths; ``arrivals`` picks the arrival
        model (default :attr:`default_arrivals`).
        """
        if not 0 < burstiness <= MAX_BURSTINESS:
            raise InputError(f"--burstiness must lie in (0, {MAX_BURSTINESS:g}], got {burstiness}")
        kind = arrivals or self.default_arrivals
        base = shape if shape is not None else (
            self.arrivals.gap_shape if kind == "multiscale" and self.arrivals else 1.0
        )  # fmt: skip
        if not base / burstiness >= MIN_GAP_SHAPE:
            raise InputError(
                f"--shape {base:g} with --burstiness {burstiness:g} gives a gap shape of "
                f"{base / burstiness:.3g}; it must be at least {MIN_GAP_SHAPE:g}"
            )
        rng = np.random.default_rng(seed)
        duration = duration_s if duration_s is not None else self.duration_s
        # a session class's arrival event brings all its turns: draw fewer events
        per_event = 1.0 / sum(c.share / c.turns for c in self.classes)
        target = rps if rps is not None else self.mean_rps
        if kind == "multiscale":
            if self.arrivals is None:
                raise InputError(
                    f"this model (format version 1) has no multi-scale arrivals: refit it "
                    f"with 'burstlab fit {self.source}', or use window-gamma arrivals"
                )
            events = self.arrivals.sample(
                rng, duration, target, per_event=per_event, burstiness=burstiness, shape=shape
            )
        else:
            events = self.window_gamma.sample(
                rng, duration, target / self.mean_rps / per_event,
                burstiness=burstiness, shape=shape,
            )  # fmt: skip
        return self._requests(rng, events, duration, length_cap)

    def _requests(
        self,
        rng: np.random.Generator,
        events: np.ndarray,
        duration: float,
        length_cap: int | None,
    ) -> pl.DataFrame:
        weights = np.array([c.share / c.turns for c in self.classes])
        event_class = rng.choice(len(self.classes), size=events.size, p=weights / weights.sum())
        plain = np.ones(events.size, dtype=bool)
        times, classes, sessions, turns = [], [], [], []
        next_session = 0
        for i, c in enumerate(self.classes):
            if c.sessions is None:
                continue
            starts = np.flatnonzero(event_class == i)
            plain[starts] = False  # these events become sessions
            t, s, k = expand_sessions(rng, events[starts], c.sessions)
            times.append(t)
            classes.append(np.full(t.size, i))
            sessions.append(s + next_session)
            turns.append(k)
            next_session += starts.size
        # plain events are already sorted: sort only the session turns and merge them in
        base = events[plain]
        extra = np.concatenate(times) if times else np.zeros(0)
        order = np.argsort(extra, kind="stable")
        extra = extra[order]
        slots = np.searchsorted(base, extra, side="right") + np.arange(extra.size)
        is_turn = np.zeros(base.size + extra.size, dtype=bool)
        is_turn[slots] = True

        def merged(plain_values: np.ndarray, turn_values: list[np.ndarray]) -> np.ndarray:
            out = np.empty(is_turn.size, dtype=plain_values.dtype)
            out[~is_turn] = plain_values
            out[is_turn] = (np.concatenate(turn_values) if turn_values else out[:0])[order]
            return out

        arrival_all = merged(base, times)
        keep = arrival_all < duration
        arrival_s = arrival_all[keep]
        which_all = merged(event_class[plain], classes)[keep]
        session_all = merged(np.full(base.size, -1, dtype=np.int64), sessions)[keep]
        turn_all = merged(np.full(base.size, -1, dtype=np.int64), turns)[keep]
        return self._lengths(
            rng, arrival_s, which=which_all, session=session_all, turn=turn_all,
            length_cap=length_cap,
        )  # fmt: skip

    def _lengths(
        self,
        rng: np.random.Generator,
        arrival: np.ndarray,
        *,
        which: np.ndarray,
        session: np.ndarray,
        turn: np.ndarray,
        length_cap: int | None,
    ) -> pl.DataFrame:
        n = arrival.size
        inputs = np.ones(n, dtype=np.int64)
        outputs = np.ones(n, dtype=np.int64)
        failed = np.zeros(n, dtype=bool)
        for i, c in enumerate(self.classes):
            rows = np.flatnonzero(which == i)
            inputs[rows] = c.request.sample(rng, rows.size)
            outputs[rows] = c.response.sample(rng, inputs[rows])
            failed[rows] = rng.random(rows.size) < c.failure_probability
        if length_cap is not None:
            np.minimum(inputs, length_cap, out=inputs)
            np.minimum(outputs, length_cap, out=outputs)
        outputs[failed] = 0  # as in BurstGPT: a failed request has no response tokens
        index = pl.Series(which)
        table = pl.DataFrame(
            {
                "arrival_s": arrival,
                "model": index.replace_strict(
                    {i: c.model for i, c in enumerate(self.classes)}, return_dtype=pl.String
                ),
                "log_type": index.replace_strict(
                    {i: c.log_type for i, c in enumerate(self.classes)}, return_dtype=pl.String
                ),
                "session_id": pl.Series(session),
                "turn": pl.Series(turn, dtype=pl.Int32),
                "input_tokens": np.minimum(inputs, 2**31 - 1),
                "output_tokens": np.minimum(outputs, 2**31 - 1),
                "failed": failed,
                "elapsed_s": pl.Series([None] * n, dtype=pl.Float64),
            }
        )
        table = table.with_columns(
            session_id=pl.when(pl.col("session_id") >= 0).then(
                pl.format("s{}", pl.col("session_id"))
            ),
            turn=pl.when(pl.col("session_id") >= 0).then(pl.col("turn")),
        )
        return conform(table).collect()


def fit(table: pl.DataFrame, *, window_s: float = 1200.0, source: str = "table") -> WorkloadModel:
    """Fit a :class:`WorkloadModel` to a canonical request table.

    Both arrival models are fitted: the multi-scale process and, over windows of
    ``window_s`` seconds, the paper's per-window Gamma.
    """
    arrival = table["arrival_s"].to_numpy()
    if arrival.size < 3 or arrival[-1] <= arrival[0]:
        raise InputError(
            f"{source}: a model needs at least 3 requests spread over time; this table has "
            f"{arrival.size} over {float(arrival[-1] - arrival[0]) if arrival.size else 0:g} s"
        )
    arrival = arrival - arrival[0]
    resolution = detect_resolution(arrival)
    classes = []
    groups = (
        table.group_by("model", "log_type")
        .agg(
            n=pl.len(),
            failed=pl.col("failed").mean(),
            inp=pl.col("input_tokens"),
            out=pl.col("output_tokens").filter(~pl.col("failed") & (pl.col("output_tokens") > 0)),
            ok_inp=pl.col("input_tokens").filter(~pl.col("failed") & (pl.col("output_tokens") > 0)),
        )
        .sort("n", descending=True)
    )
    for row in groups.iter_rows(named=True):
        rows = table.filter(
            pl.col("model").eq_missing(row["model"])
            & pl.col("log_type").eq_missing(row["log_type"])
        )
        inp = np.asarray(row["inp"], dtype=np.float64)
        ok_in, ok_out = np.asarray(row["ok_inp"]), np.asarray(row["out"], dtype=np.float64)
        classes.append(
            ClassModel(
                model=None if row["model"] is None else str(row["model"]),
                log_type=row["log_type"],
                share=row["n"] / table.height,
                failure_probability=float(row["failed"]),
                request=length_model(inp),
                response=response_model(ok_in, ok_out),
                sessions=fit_sessions(rows),
            )
        )
    span = float(arrival[-1]) if arrival.size > 1 else window_s
    return WorkloadModel(
        source=source,
        duration_s=span,
        mean_rps=table.height / span,
        resolution_s=resolution.tick_s,
        arrivals=fit_multiscale(arrival, resolution),
        window_gamma=fit_window_gamma(arrival, window_s, resolution),
        classes=classes,
        reference=reference(table),
    )


def save_model(model: WorkloadModel, path: str | Path) -> Path:
    """Write ``model`` as JSON atomically."""
    return atomic_write(path, model.model_dump_json(indent=1).encode())


def _from_version_1(data: dict[str, object]) -> dict[str, object]:
    """A version-1 model (per-window Gamma only) in the version-2 layout.

    Its fidelity reference predates the resolution-aware one, so it is rebuilt
    empty of gap statistics and the fidelity report says so.
    """
    out = dict(data)
    out["window_gamma"] = {
        "window_s": out.pop("window_s", 1200.0),
        "windows": out.pop("windows", []),
        "zero_gap_share": out.pop("zero_gap_share", 0.0),
    }
    out["arrivals"] = None
    out["reference"] = upgrade_reference(out.get("reference"))
    out["version"] = MODEL_VERSION
    return out


def load_model(path: str | Path) -> WorkloadModel | None:
    """The model in ``path`` if it is a burstlab workload-model JSON file, else None.

    A JSON file that says it is a workload model but does not validate is an
    error naming the first bad field.
    """
    p = Path(str(path))
    if p.suffix.lower() != ".json" or not p.is_file():
        return None
    try:
        data = orjson.loads(p.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc})", path=p) from None
    if not isinstance(data, dict) or data.get("kind") != "workload-model":
        return None
    if data.get("version") == 1:
        data = _from_version_1(data)
    if data.get("version") != MODEL_VERSION:
        raise InputError(
            f"workload model version {data.get('version')!r} is not supported "
            f"(this burstlab reads version {MODEL_VERSION})",
            path=p,
        )
    try:
        return WorkloadModel.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc, path=p, prefix="field ") from None
