"""Retry-After in seconds or as an HTTP-date (RFC 9110 section 10.2.3)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from burstlab.bench.client import retry_after_seconds

NOW = datetime(2015, 10, 21, 7, 27, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2", 2.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 30.0),  # IMF-fixdate
        ("Wednesday, 21-Oct-15 07:28:00 GMT", 30.0),  # obsolete RFC 850
        ("Wed Oct 21 07:28:00 2015", 30.0),  # obsolete asctime
        ("Wed, 21 Oct 2015 07:28:00 -0000", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past: clamped at 0
        ("soon", None),
        ("", None),
        ("-1", None),
        ("nan", None),
        ("inf", None),
        ("Wed, 99 Oct 2015 07:28:00 GMT", None),
    ],
)
def test_retry_after(value: str, seconds: float | None) -> None:
    assert retry_after_seconds(value, NOW) == seconds


def test_a_date_is_read_against_the_wall_clock_by_default() -> None:
    assert retry_after_seconds("Thu, 01 Jan 1970 00:00:00 GMT") == 0.0
