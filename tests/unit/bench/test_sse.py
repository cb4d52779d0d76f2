"""The SSE parser against the WHATWG rules, fed in every possible split."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from burstlab.bench.sse import SSEOversizeError, SSEParser

STREAM = (
    "\ufeff: comment\n"
    'data: {"a": "é日本"}\n\n'
    "data:no-space\n"
    "data:  two-spaces\n\n"
    "event: ignored\nid: 7\ndata: x\r\n\r\n"
    "data: y\rdata: z\r\r"
    "data\n\n"
    "data: [DONE]\n\n"
).encode()
EXPECTED = [
    '{"a": "é日本"}'.encode(),
    b"no-space\n two-spaces",
    b"x",
    b"y\nz",
    b"",
    b"[DONE]",
]


def feed_all(parts: list[bytes]) -> list[bytes]:
    parser = SSEParser()
    out: list[bytes] = []
    for part in parts:
        out += parser.feed(part)
    return out


def test_whole_stream() -> None:
    assert feed_all([STREAM]) == EXPECTED


def test_every_two_way_split() -> None:
    for cut in range(len(STREAM) + 1):
        assert feed_all([STREAM[:cut], STREAM[cut:]]) == EXPECTED, cut


@given(st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_any_split(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(STREAM)]
    parts = [STREAM[a:b] for a, b in itertools.pairwise(points)]
    assert feed_all(parts) == EXPECTED


def test_byte_at_a_time_keeps_utf8_whole() -> None:
    assert feed_all([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


def test_unterminated_event_is_pending() -> None:
    parser = SSEParser()
    assert parser.feed(b'data: {"x": 1}\n') == []
    assert parser.pending


def test_oversized_event_and_line_are_bounded() -> None:
    parser = SSEParser(max_event_bytes=1000)
    with pytest.raises(SSEOversizeError):
        parser.feed(b"data: " + b"x" * 600 + b"\ndata: " + b"y" * 600 + b"\n")
    line = SSEParser(max_event_bytes=1000)
    for _ in range(9):
        line.feed(b"z" * 100)
    with pytest.raises(SSEOversizeError):
        line.feed(b"z" * 200)
