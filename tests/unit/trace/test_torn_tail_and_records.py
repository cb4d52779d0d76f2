"""A JSON Lines file's torn last line is accepted and counted (RELIABILITY.md D2; issue 14
item 13)."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import pytest

from burstlab import InputError, read_trace

WriteFile = Callable[[str, str | bytes], Path]


def mooncake(*times: int) -> bytes:
    return b"".join(
        b'{"timestamp": %d, "input_length": 3, "output_length": 4}\n' % t for t in times
    )


def reconciles(rows_read: int, rows_kept: int, dropped: dict[str, int]) -> bool:
    return rows_read == rows_kept + sum(dropped.values())


@pytest.mark.parametrize("cut", [1, 10, 30, 54])
def test_a_torn_last_json_line_is_dropped_as_torn_tail(write_file: WriteFile, cut: int) -> None:
    torn = mooncake(9)[:cut]
    table, report = read_trace(write_file("t.jsonl", mooncake(0, 1, 2) + torn))
    assert table.height == report.rows_kept == 3
    assert (report.rows_read, report.dropped) == (4, {"torn_tail": 1})
    assert reconciles(report.rows_read, report.rows_kept, report.dropped)
    assert any("line 4 is torn" in w for w in report.warnings)


def test_a_torn_tail_in_a_gzip_file_too(write_file: WriteFile) -> None:
    path = write_file("t.jsonl.gz", gzip.compress(mooncake(0, 1) + b'{"timestamp": 5, "inp'))
    table, report = read_trace(path)
    assert (table.height, report.dropped, report.compressed) == (2, {"torn_tail": 1}, True)


def test_a_complete_last_line_without_newline_is_kept(write_file: WriteFile) -> None:
    table, report = read_trace(write_file("t.jsonl", mooncake(0, 1, 2).rstrip(b"\n")))
    assert (table.height, report.dropped) == (3, {})


def test_a_bad_line_before_the_last_is_still_an_error(write_file: WriteFile) -> None:
    path = write_file("t.jsonl", mooncake(0) + b'{"timestamp": 5, "inp\n' + mooncake(6))
    with pytest.raises(InputError, match="not valid JSON") as info:
        read_trace(path)
    assert info.value.line == 2
    # a bad last line that does end in a newline was written whole: not torn
    with pytest.raises(InputError, match="not valid JSON"):
        read_trace(write_file("u.jsonl", mooncake(0) + b'{"timestamp": 5, "inp\n'))
