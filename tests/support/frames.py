"""Small canonical workload tables for tests."""

from __future__ import annotations

import polars as pl

from burstlab.trace.schema import conform


def workload(
    arrivals: list[float],
    *,
    input_tokens: int = 32,
    output_tokens: int = 4,
    sessions: list[str | None] | None = None,
) -> pl.DataFrame:
    """A canonical workload with these intended times; ``sessions`` numbers turns in order."""
    n = len(arrivals)
    sessions = sessions or [None] * n
    seen: dict[str, int] = {}
    turns: list[int | None] = []
    for s in sessions:
        turns.append(None if s is None else seen.get(s, 0))
        if s is not None:
            seen[s] = seen.get(s, 0) + 1
    return conform(
        pl.DataFrame(
            {
                "arrival_s": arrivals,
                "model": ["m"] * n,
                "log_type": ["api"] * n,
                "session_id": sessions,
                "turn": turns,
                "input_tokens": [input_tokens] * n,
                "output_tokens": [output_tokens] * n,
                "failed": [False] * n,
                "elapsed_s": [None] * n,
            },
            schema_overrides={"session_id": pl.String, "turn": pl.Int32, "elapsed_s": pl.Float64},
        )
    ).collect()


def constant_rate(n: int, rate: float, output: int = 4, input_tokens: int = 32) -> pl.DataFrame:
    """``n`` requests at ``rate`` per second."""
    return workload([i / rate for i in range(n)], input_tokens=input_tokens, output_tokens=output)
