"""Durations typed on the command line."""

from __future__ import annotations

import pytest

from burstlab.core.errors import InputError
from burstlab.core.units import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("30s", 30.0),
        ("20m", 1200.0),
        ("1.5h", 5400.0),
        ("2d", 172800.0),
        ("1w", 604800.0),
        ("0", 0.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-5m", "5 parsecs", "1e999"])
def test_bad_durations_name_the_option(text: str) -> None:
    with pytest.raises(InputError, match="--window"):
        parse_duration(text, option="--window")
