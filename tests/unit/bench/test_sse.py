"""The SSE parser against the WHATWG rules, fed in every possible split."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from burstlab.bench.sse import MAX_EVENT_BYTES, SSEOversizeError, SSEParser

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


def event_of(size: int) -> bytes:
    """One SSE event whose data is exactly ``size`` bytes."""
    return b"data: " + b"x" * size + b"\n\n"


@pytest.mark.parametrize("size", [1 << 20, MAX_EVENT_BYTES])
@pytest.mark.parametrize("read", [1 << 16, 1 << 30])
def test_an_event_up_to_the_cap_is_legal(size: int, read: int) -> None:
    """1 MiB (a reasoning dump, RELIABILITY.md F18) is well inside the cap, and the cap
    itself is inclusive, whether the event comes in one read or in 64 KiB reads."""
    assert MAX_EVENT_BYTES > 1 << 20
    stream = event_of(size) + b"data: [DONE]\n\n"
    parts = [stream[i : i + read] for i in range(0, len(stream), read)]
    assert feed_all(parts) == [b"x" * size, b"[DONE]"]


@pytest.mark.parametrize("read", [1 << 16, 1 << 30])
def test_one_byte_over_the_cap_is_oversize(read: int) -> None:
    stream = event_of(MAX_EVENT_BYTES + 1)
    parts = [stream[i : i + read] for i in range(0, len(stream), read)]
    with pytest.raises(SSEOversizeError):
        feed_all(parts)


def test_the_cap_counts_joined_data_lines() -> None:
    """Two data lines of 500 bytes join into 1001 bytes (with the newline)."""
    assert feed_all([b"data: " + b"a" * 499 + b"\ndata: " + b"b" * 500 + b"\n\n"]) == [
        b"a" * 499 + b"\n" + b"b" * 500
    ]
    parser = SSEParser(max_event_bytes=1000)
    assert parser.feed(b"data: " + b"a" * 499 + b"\ndata: " + b"b" * 500 + b"\n\n")
    with pytest.raises(SSEOversizeError):
        SSEParser(max_event_bytes=1000).feed(
            b"data: " + b"a" * 500 + b"\ndata: " + b"b" * 500 + b"\n"
        )


def test_a_finished_event_does_not_count_against_the_next() -> None:
    """An event of 0.9 x cap ends in the read that starts the next one: both are legal
    (the unterminated line is measured against the new event, not the finished one)."""
    parser = SSEParser(max_event_bytes=1000)
    big = b"x" * 900
    assert parser.feed(b"data: " + big + b"\n") == []
    assert parser.feed(b"\ndata: " + big[:800]) == [big]
    assert parser.feed(big[800:] + b"\n\n") == [big]
