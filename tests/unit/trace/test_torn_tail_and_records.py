"""A JSON Lines file's torn last line is accepted and counted (RELIABILITY.md D2; issue 14
item 13), and burstlab's records (written as requests end) read without --sort (item 12)."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import pytest

from burstlab import InputError, read_trace
from burstlab.results.records import Record, RecordWriter

WriteFile = Callable[[str, str | bytes], Path]


def mooncake(*times: int) -> bytes:
    return b"".join(
        b'{"timestamp": %d, "input_length": 3, "output_length": 4}\n' % t for t in times
    )


def write_records(path: Path, order: list[int]) -> Path:
    """Records as bench writes them: request i intended at i/2 s, in the given end order."""
    writer = RecordWriter(path)
    for i in order:
        writer.write(
            Record(
                request_id=i, arrival_s=i / 2, input_tokens=10 + i, output_tokens=5, outcome="ok"
            )
        )
    writer.close()
    return path


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


def test_records_are_detected_and_sorted_without_sort(tmp_path: Path) -> None:
    path = write_records(tmp_path / "records.jsonl", [1, 0, 3, 2, 4])
    table, report = read_trace(path)
    assert report.format == "records"
    assert table["arrival_s"].to_list() == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert table["input_tokens"].to_list() == [10, 11, 12, 13, 14]
    assert report.reordered == 2
    assert any("records out of arrival order" in w for w in report.warnings)


def test_records_with_a_torn_last_line_read_and_reconcile(tmp_path: Path) -> None:
    """A run killed mid-write: ``analyze records.jsonl`` reads it as ``report`` does."""
    path = write_records(tmp_path / "records.jsonl", [0, 2, 1])
    with path.open("ab") as fh:
        fh.write(b'{"request_id":3,"arrival_s":1.5,"model":null,"input_tok')
    table, report = read_trace(path)
    assert (report.format, table.height, report.rows_read) == ("records", 3, 4)
    assert report.dropped == {"torn_tail": 1}
    assert reconciles(report.rows_read, report.rows_kept, report.dropped)


def test_a_request_table_with_the_same_columns_is_not_records(tmp_path: Path) -> None:
    path = tmp_path / "table.jsonl"
    path.write_bytes(
        b'{"arrival_s": 1.0, "input_tokens": 3, "output_tokens": 4}\n'
        b'{"arrival_s": 0.5, "input_tokens": 3, "output_tokens": 4}\n'
    )
    with pytest.raises(InputError, match="timestamp goes backwards"):
        read_trace(path)
    _, report = read_trace(path, sort=True)
    assert (report.format, report.reordered) == ("burstlab", 1)
