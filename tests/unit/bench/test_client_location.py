"""A redirect's Location, and URLs in error text, are stored without credentials."""

from __future__ import annotations

import pytest

from burstlab.bench.client import safe_location, without_credentials


@pytest.mark.parametrize(
    ("location", "stored"),
    [
        ("http://u:p@127.0.0.1:8/v1/x?a=1", "http://127.0.0.1:8/v1/x?a=1"),
        ("https://user@host/x", "https://host/x"),
        ("https://u:p@ss@host/x", "https://host/x"),
        ("//u:p@host/x", "//host/x"),
        ("http://u:p@[::1]:8/", "http://[::1]:8/"),
        ("http://host/x?mail=a@b", "http://host/x?mail=a@b"),
        ("/v1/completions", "/v1/completions"),
        ("http://u:p@[bad/x", "http://[bad/x"),
    ],
)
def test_safe_location(location: str, stored: str) -> None:
    assert safe_location(location) == stored


def test_urls_in_text_lose_their_credentials() -> None:
    text = "moved to http://a:secret@h/x, see HTTPS://b:other@k"
    assert without_credentials(text) == "moved to http://h/x, see HTTPS://k"
