"""Numbers, times and free text as the run report shows them: one precision rule per
kind of figure, and ``-`` wherever there is no value (``None``, NaN or infinity)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

#: Longest free text (an error message) shown in one table cell, in characters.
CLIP_CHARS = 200


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def fmt_ms(seconds: float | None, like: float | None = None) -> str:
    """Seconds as milliseconds with precision that suits the size (0.042, 4.20, 42.0,
    4,200); the size of ``like`` (seconds) sets it when given, so a table row reads
    with one precision."""
    v = _finite(seconds)
    if v is None:
        return "-"
    ms = v * 1e3
    ref = _finite(like)
    size = abs(ms if ref is None else ref * 1e3)
    digits = 3 if size < 1 else 2 if size < 10 else 1 if size < 1000 else 0
    return f"{ms:,.{digits}f}"


def fmt_num(value: float | None, digits: int = 2) -> str:
    """A number with ``digits`` decimals and thousands separators."""
    v = _finite(value)
    return "-" if v is None else f"{v:,.{digits}f}"


def fmt_int(value: float | None) -> str:
    """A count, rounded, with thousands separators."""
    v = _finite(value)
    return "-" if v is None else f"{round(v):,}"


def fmt_share(value: float | None, digits: int = 1) -> str:
    """A fraction (0-1) as a percentage."""
    v = _finite(value)
    return "-" if v is None else f"{100 * v:.{digits}f}%"


def fmt_time(unix_s: float | None) -> str:
    """A Unix time as a UTC date and time."""
    v = _finite(unix_s)
    if v is None:
        return "-"
    try:
        return datetime.fromtimestamp(v, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return "-"


def fmt_duration(seconds: float | None) -> str:
    """A span in seconds, minutes or hours, whichever reads best."""
    v = _finite(seconds)
    if v is None:
        return "-"
    if v < 120:
        return f"{v:.1f} s"
    if v < 7200:
        return f"{v / 60:.1f} min"
    return f"{v / 3600:.2f} h"


def text(value: object) -> str:
    """A setting of any type as display text (the template escapes it)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def clip(value: str, limit: int = CLIP_CHARS) -> str:
    """``value`` on one line, cut to ``limit`` characters with an ellipsis."""
    value = " ".join(value.split())
    return value if len(value) <= limit else value[: limit - 1] + "…"
