"""A seeded multi-day synthetic trace with daily and weekly cycles, for forecasting.

The BurstGPT trace spans 213 days; the bundled sample spans one hour, too short
to show a daily or weekly cycle. :func:`synthetic_trace` draws a trace of any
length whose shape is known, so forecasts can be tested and demonstrated:

- arrivals are a non-homogeneous Poisson process whose rate is piecewise
  constant over ``step_s`` steps: ``rps`` times a daily cycle (peak at 14:00,
  trough at 02:00), times a weekend dip (Saturday and Sunday), times noise in
  log rate: a slow drift (an AR(1) process with a one-day memory, the level
  moving from day to day) plus fast noise independent from step to step (bursty
  minutes, which average out over longer intervals, so coarser intervals are
  easier to forecast, as in the BurstGPT paper); the rate is scaled so that its
  mean over the whole trace is exactly ``rps``;
- request and response lengths are lognormal, with means that follow the daily
  cycle a little (longer prompts in working hours, shorter responses).

``arrival_s`` = 0 is midnight of a Monday. Everything is vectorised and seeded:
the same arguments give the same table.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from scipy.signal import lfilter

from burstlab.trace.schema import conform

DAY_S = 86_400.0
WEEK_S = 7 * DAY_S
#: Longest request and response, tokens (lognormal tails are capped here).
MAX_INPUT_TOKENS = 32_768
MAX_OUTPUT_TOKENS = 8_192


def synthetic_rate(
    duration_s: float,
    *,
    rps: float = 1.0,
    seed: int = 0,
    daily: float = 0.5,
    weekly: float = 0.3,
    noise: float = 0.3,
    drift: float = 0.1,
    step_s: float = 60.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The rate curve of :func:`synthetic_trace`: (step starts in s, rate in req/s).

    ``daily`` is the relative amplitude of the daily cycle (0.5: the peak rate is
    three times the trough), ``weekly`` the relative dip on weekends, ``noise``
    the standard deviation of the fast log-rate noise (per step) and ``drift``
    that of the slow one. The mean of the returned rate, weighted by step
    length, is ``rps``.
    """
    if not duration_s > 0 or not rps > 0 or not step_s > 0:
        raise ValueError("duration_s, rps and step_s must be positive")
    if not 0 <= daily < 1 or not 0 <= weekly < 1 or noise < 0 or drift < 0:
        raise ValueError("daily and weekly must lie in [0, 1), noise and drift >= 0")
    steps = math.ceil(duration_s / step_s)
    start = np.arange(steps, dtype=np.float64) * step_s
    mid = np.minimum(start + step_s / 2, duration_s)
    hour = (mid % DAY_S) / 3600.0
    cycle = 1.0 + daily * np.cos(2 * np.pi * (hour - 14.0) / 24.0)
    weekday = (mid // DAY_S) % 7
    week = np.where(weekday >= 5, 1.0 - weekly, 1.0)
    rng = np.random.default_rng([seed, 1])
    phi = math.exp(-step_s / DAY_S)
    shocks = rng.standard_normal(steps) * drift * math.sqrt(1 - phi * phi)
    shocks[0] = rng.standard_normal() * drift  # start the AR(1) in its stationary law
    slow = lfilter([1.0], [1.0, -phi], shocks)
    fast = rng.standard_normal(steps) * noise
    rate = cycle * week * np.exp(slow + fast)
    length = np.minimum(start + step_s, duration_s) - start
    rate *= rps * duration_s / float(np.sum(rate * length))
    return start, rate


def synthetic_trace(
    duration_s: float,
    *,
    rps: float = 1.0,
    seed: int = 0,
    daily: float = 0.5,
    weekly: float = 0.3,
    noise: float = 0.3,
    drift: float = 0.1,
    input_mean: float = 600.0,
    output_mean: float = 250.0,
    step_s: float = 60.0,
) -> pl.DataFrame:
    """A canonical request table of ``duration_s`` seconds at a mean ``rps`` req/s.

    Arrivals follow :func:`synthetic_rate` (Poisson counts per step, uniform
    times inside it). Request tokens are lognormal (sigma 1.0) with mean
    ``input_mean`` times ``1 + 0.1 cos`` of the daily phase; response tokens
    lognormal (sigma 0.8) with mean ``output_mean`` times ``1 - 0.1 cos``. Model
    is ``synthetic``, log type ``api``; no sessions, no failures.
    """
    start, rate = synthetic_rate(
        duration_s,
        rps=rps,
        seed=seed,
        daily=daily,
        weekly=weekly,
        noise=noise,
        drift=drift,
        step_s=step_s,
    )
    rng = np.random.default_rng([seed, 2])
    length = np.minimum(start + step_s, duration_s) - start
    counts = rng.poisson(rate * length)
    step = np.repeat(np.arange(start.size), counts)
    arrival = np.sort(start[step] + rng.random(step.size) * length[step])
    step = np.minimum((arrival // step_s).astype(np.int64), start.size - 1)
    phase = np.cos(2 * np.pi * ((start[step] % DAY_S) / 3600.0 - 14.0) / 24.0)
    inputs = _lognormal(rng, input_mean * (1 + 0.1 * phase), 1.0, MAX_INPUT_TOKENS)
    outputs = _lognormal(rng, output_mean * (1 - 0.1 * phase), 0.8, MAX_OUTPUT_TOKENS)
    n = arrival.size
    table = pl.DataFrame(
        {
            "arrival_s": arrival,
            "model": pl.repeat("synthetic", n, eager=True, dtype=pl.String),
            "log_type": pl.repeat("api", n, eager=True, dtype=pl.String),
            "session_id": pl.Series([None] * n, dtype=pl.String),
            "turn": pl.Series([None] * n, dtype=pl.Int32),
            "input_tokens": inputs,
            "output_tokens": outputs,
            "failed": np.zeros(n, dtype=bool),
            "elapsed_s": pl.Series([None] * n, dtype=pl.Float64),
        }
    )
    return conform(table).collect()


def _lognormal(rng: np.random.Generator, mean: np.ndarray, sigma: float, cap: int) -> np.ndarray:
    """Integer lognormal draws (>= 1, <= ``cap``) with the given per-draw means."""
    mu = np.log(mean) - sigma * sigma / 2
    x = np.exp(mu + sigma * rng.standard_normal(mean.size))
    out: np.ndarray = np.clip(np.rint(x), 1, cap).astype(np.int32)
    return out
