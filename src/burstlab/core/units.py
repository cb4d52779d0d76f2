"""Durations as people type them: ``90``, ``30s``, ``20m``, ``1.5h``, ``2d`` (seconds out)."""

from __future__ import annotations

import math
import re

from burstlab.core.errors import InputError

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str, *, option: str = "duration") -> float:
    """Seconds in ``text``; an :class:`InputError` naming ``option`` if it is not a
    finite, non-negative duration."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z]*)\s*", text)
    if not match or match.group(2) not in _UNITS:
        raise InputError(f"{option} {text!r} is not a duration (examples: 90, 30s, 20m, 1h, 2d)")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(seconds):
        raise InputError(f"{option} {text!r} is not finite")
    return seconds
