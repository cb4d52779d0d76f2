"""Parameter-only workloads: Gamma inter-arrival gaps and Zipf token lengths, no trace needed.

This is the "modelled scaling" mode of BurstGPT-Perf (the workload generator published with
the BurstGPT dataset), built to run: arrivals come from Gamma gaps (default shape 0.5, scale
2 s, so 1 req/s with a CV of 1.41) and request and response lengths from a Zipf law (default
exponent 1.1), each drawn independently as the published generator does. Its per-window
tables (a Gamma shape and rate per window of the day) can come from a model fitted by
``burstlab fit``, played at each window's real length or stepped through at a fixed pace of
seconds per window, the published generator's "compressed" pace (one window per 60 s of
workload time).

Times are seconds from the start of the table; lengths are tokens. Everything is drawn with
numpy in a few vectorised calls from one seeded generator, so the same arguments and seed
give the same table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from burstlab.core.errors import InputError
from burstlab.trace.schema import conform

#: Gamma shape and scale (seconds) of the gaps when neither ``--gamma`` nor a model is given;
#: the published generator's defaults (mean gap 1 s).
DEFAULT_GAMMA = (0.5, 2.0)
#: Zipf exponent of the token lengths when ``--zipf`` is not given (the published default).
DEFAULT_ZIPF = 1.1
#: Seconds of workload time per window when stepping through a table at the published pace.
SEED_PACE_S = 60.0
#: Default upper bound of request and response lengths: the published generator redraws any
#: Zipf value of 1024 or more, so its lengths run from 1 to 1023 tokens.
DEFAULT_MAX_TOKENS = 1023
#: Largest length bound accepted (the trace readers' bound on token counts).
MAX_TOKENS_LIMIT = 2_000_000
#: Largest expected number of requests a call may draw (memory: ~30 bytes a row).
MAX_REQUESTS = 50_000_000


@dataclass(frozen=True, slots=True)
class Window:
    """One stretch of arrivals: mean rate (req/s), Gamma shape of the gaps, and length (s).

    A rate of 0 is a silent window. The Gamma scale is ``1 / (rate * shape)`` seconds, so
    the window's mean rate is ``rate_rps`` whatever its shape.
    """

    rate_rps: float
    shape: float
    length_s: float

    @property
    def scale_s(self) -> float:
        """The Gamma scale of the gaps in seconds (infinite for a silent window)."""
        return math.inf if self.rate_rps == 0 else 1.0 / (self.rate_rps * self.shape)


def windows_from_table(
    rows: Sequence[tuple[float, float | None, float | None]],
    window_s: float,
    *,
    pace_s: float | None = None,
) -> list[Window]:
    """Windows from a fitted model's per-window table of ``(rate_rps, shape, scale)``.

    ``window_s`` is the table's window length in seconds. Each window keeps its rate (req/s)
    and Gamma shape; its fitted scale is not used, because a window's rate counts every
    request in it while the Gamma fit sees only the gaps between them: the scale is set so
    the mean rate is the window's rate (as ``generate --model`` does). A window whose shape
    could not be fitted (``None``, too few gaps) gets shape 1 (Poisson). ``pace_s`` plays each
    window for that many seconds instead of ``window_s`` (the published generator steps
    through its tables at 60 s a window while keeping each window's rate).
    """
    if not rows:
        raise InputError("the model has no per-window table")
    length = _positive(pace_s, "--pace") if pace_s is not None else _positive(window_s, "window")
    windows = []
    for i, (rate, shape, _scale) in enumerate(rows):
        if not (math.isfinite(rate) and rate >= 0):
            raise InputError(f"window {i}: rate {rate} is not a finite rate >= 0")
        k = 1.0 if shape is None else shape
        if not (math.isfinite(k) and k > 0):
            raise InputError(f"window {i}: Gamma shape {shape} is not positive")
        windows.append(Window(rate_rps=float(rate), shape=float(k), length_s=length))
    return windows


def parse_gamma(text: str) -> tuple[float, float]:
    """``SHAPE,SCALE`` (scale in seconds) as two positive finite numbers."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(parts):
        raise InputError(f"--gamma {text!r} is not SHAPE,SCALE (e.g. --gamma 0.5,2)")
    try:
        shape, scale = float(parts[0]), float(parts[1])
    except ValueError:
        raise InputError(f"--gamma {text!r} is not SHAPE,SCALE (e.g. --gamma 0.5,2)") from None
    return _positive(shape, "--gamma shape"), _positive(scale, "--gamma scale")


def parametric_workload(
    *,
    duration_s: float | None = None,
    gamma: tuple[float, float] | None = None,
    zipf: float = DEFAULT_ZIPF,
    windows: Sequence[Window] | None = None,
    rps: float | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    seed: int = 0,
) -> pl.DataFrame:
    """A canonical request table of Gamma arrivals and Zipf lengths.

    Arrivals: ``gamma=(shape, scale_s)`` for one stationary process over ``duration_s``
    seconds (default :data:`DEFAULT_GAMMA`), or ``windows`` (see :func:`windows_from_table`)
    played one after the other, cycling when ``duration_s`` is longer than the table and
    cut when shorter (default: the table once). Each window starts its own renewal process
    at a uniformly drawn point of a first gap. ``rps`` multiplies every rate by one factor
    so the expected mean rate over ``duration_s`` is ``rps`` req/s, keeping every shape (so
    the burstiness is kept and only the rate moves); with ``gamma`` that rescales the scale
    to ``1 / (rps * shape)``.

    Lengths: request and response tokens each drawn independently from a Zipf law with
    exponent ``zipf`` truncated to ``1..max_tokens`` (P(k) proportional to k^-zipf), which
    is exactly what redrawing out-of-range values gives, but in one pass and for any
    exponent > 0. The default bound, 1023, is the published generator's. No request fails;
    model and log type are null (the parameters say nothing about them); no sessions.
    """
    if gamma is not None and windows is not None:
        raise InputError("--gamma and --windows cannot be combined: the windows set the gaps")
    zipf = _positive(zipf, "--zipf")
    if isinstance(max_tokens, bool) or not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
        raise InputError(f"--length-cap must be from 1 to {MAX_TOKENS_LIMIT:,}, got {max_tokens}")
    if windows is None:
        if duration_s is None:
            raise InputError("--duration is needed without --windows (e.g. --duration 1h)")
        shape, scale = gamma if gamma is not None else DEFAULT_GAMMA
        shape, scale = _positive(shape, "--gamma shape"), _positive(scale, "--gamma scale")
        duration = _positive(duration_s, "--duration")
        plan = [Window(rate_rps=1.0 / (shape * scale), shape=shape, length_s=duration)]
    else:
        if not windows:
            raise InputError("the model has no per-window table")
        table_s = sum(w.length_s for w in windows)
        duration = _positive(duration_s if duration_s is not None else table_s, "--duration")
        plan = _cover(windows, duration)
    expected = sum(w.rate_rps * w.length_s for w in plan)
    if rps is not None:
        target = _positive(rps, "--rps")
        if expected <= 0:
            raise InputError("--rps: every window of the table is silent (rate 0)")
        factor = target * duration / expected
        plan = [Window(w.rate_rps * factor, w.shape, w.length_s) for w in plan]
        expected = target * duration
    if expected > MAX_REQUESTS:
        raise InputError(
            f"this asks for about {expected:,.0f} requests; at most {MAX_REQUESTS:,}",
            hint="shorten --duration or lower --rps",
        )
    rng = np.random.default_rng(seed)
    arrival = gamma_arrivals(rng, plan)
    n = arrival.size
    table = pl.DataFrame(
        {
            "arrival_s": arrival,
            "model": pl.Series([None] * n, dtype=pl.String),
            "log_type": pl.Series([None] * n, dtype=pl.String),
            "session_id": pl.Series([None] * n, dtype=pl.String),
            "turn": pl.Series([None] * n, dtype=pl.Int32),
            "input_tokens": zipf_lengths(rng, n, zipf, max_tokens),
            "output_tokens": zipf_lengths(rng, n, zipf, max_tokens),
            "failed": np.zeros(n, dtype=bool),
            "elapsed_s": pl.Series([None] * n, dtype=pl.Float64),
        }
    )
    return conform(table).collect()


def gamma_arrivals(rng: np.random.Generator, windows: Sequence[Window]) -> np.ndarray:
    """Sorted arrival times (s) of back-to-back windows, each a Gamma renewal process.

    All gaps are drawn in one call: each window gets enough gaps to pass its end with
    overwhelming probability (mean count plus eight standard deviations), and in the rare
    case one does not, its count is doubled and everything is drawn again (deterministic
    for a seed). The first arrival of a window falls a uniform fraction into its first gap.
    """
    starts = np.concatenate([[0.0], np.cumsum([w.length_s for w in windows])[:-1]])
    live = [i for i, w in enumerate(windows) if w.rate_rps > 0]
    if not live:
        return np.zeros(0)
    rate = np.array([windows[i].rate_rps for i in live])
    shape = np.array([windows[i].shape for i in live])
    length = np.array([windows[i].length_s for i in live])
    start = starts[live]
    mean_count = rate * length
    cv2 = 1.0 / shape  # squared CV of a gap
    counts = np.ceil(mean_count + 8.0 * np.sqrt(mean_count * cv2) + 64.0 * cv2 + 8.0).astype(
        np.int64
    )
    while True:
        total = int(counts.sum())
        gaps = rng.gamma(np.repeat(shape, counts), np.repeat(1.0 / (rate * shape), counts), total)
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        u = rng.random(len(live))
        running = np.cumsum(gaps)
        before = np.repeat(running[first] - gaps[first], counts)
        offsets = running - before - np.repeat(gaps[first] * (1.0 - u), counts)
        short = offsets[first + counts - 1] < length
        if not short.any():
            break
        counts[short] *= 2
    keep = offsets < np.repeat(length, counts)
    arrival: np.ndarray = (np.repeat(start, counts) + offsets)[keep]
    return arrival


def zipf_lengths(rng: np.random.Generator, n: int, exponent: float, max_tokens: int) -> np.ndarray:
    """``n`` token counts from a Zipf law with this exponent truncated to ``1..max_tokens``.

    Inverse-CDF sampling over the finite support (one uniform per draw), so any exponent
    > 0 works and no value is redrawn; int32 values.
    """
    support = np.arange(1, max_tokens + 1, dtype=np.float64)
    cdf = np.cumsum(support**-exponent)
    cdf /= cdf[-1]
    picks = np.searchsorted(cdf, rng.random(n), side="right")
    return (np.minimum(picks, max_tokens - 1) + 1).astype(np.int32)


def _cover(windows: Sequence[Window], duration_s: float) -> list[Window]:
    """The table's windows back to back, cycling, until ``duration_s``; the last one cut."""
    plan: list[Window] = []
    elapsed = 0.0
    i = 0
    while elapsed < duration_s:
        w = windows[i % len(windows)]
        length = min(w.length_s, duration_s - elapsed)
        plan.append(Window(w.rate_rps, w.shape, length))
        elapsed += length
        i += 1
    return plan


def _positive(value: float | None, name: str) -> float:
    """``value`` as a float if it is a finite number > 0, else an :class:`InputError`."""
    if value is None or isinstance(value, bool):
        raise InputError(f"{name} must be a positive number, got {value}")
    number = float(value)
    if not (math.isfinite(number) and number > 0):
        raise InputError(f"{name} must be a positive finite number, got {value}")
    return number
