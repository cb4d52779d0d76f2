"""Each bad input gives an InputError naming the file, the line and the column."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import pytest

from burstlab import InputError, read_trace

HEAD = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
OK = "1,ChatGPT,10,5,15,API log\n"

WriteFile = Callable[[str, str | bytes], Path]


def fails(path: Path | str, **kwargs: object) -> InputError:
    with pytest.raises(InputError) as info:
        read_trace(path, **kwargs)  # type: ignore[arg-type]
    return info.value


def test_missing_path(tmp_path: Path) -> None:
    err = fails(tmp_path / "nope.csv")
    assert "no such file" in str(err)
    assert str(tmp_path / "nope.csv") in str(err)


def test_directory(tmp_path: Path) -> None:
    assert "is a directory" in str(fails(tmp_path))


def test_empty_file(write_file: WriteFile) -> None:
    assert "empty file" in str(fails(write_file("e.csv", "")))


def test_header_only(write_file: WriteFile) -> None:
    err = fails(write_file("h.csv", HEAD))
    assert "no rows" in str(err)


def test_missing_column(write_file: WriteFile) -> None:
    err = fails(
        write_file(
            "m.csv",
            "Timestamp,Model,Response tokens,Total tokens,Log Type\n1,ChatGPT,5,15,API log\n",
        )
    )
    assert err.line == 1
    assert "missing column 'Request tokens'" in str(err)
    assert "found: Timestamp, Model" in str(err)


def test_renamed_column_suggests_nearest(write_file: WriteFile) -> None:
    err = fails(write_file("r.csv", HEAD.replace("Request tokens", "Request_tokens") + OK))
    assert "missing column 'Request tokens'" in str(err)
    assert "did you mean 'Request_tokens'?" in str(err)


def test_unknown_format(write_file: WriteFile) -> None:
    err = fails(write_file("u.csv", "a,b,c\n1,2,3\n"))
    assert "cannot tell the trace format" in str(err)
    assert err.hint is not None
    assert "--format" in err.hint


def test_duplicate_header(write_file: WriteFile) -> None:
    err = fails(
        write_file(
            "d.csv",
            "Timestamp,Model,Model,Request tokens,Response tokens,Log Type\n1,a,b,1,1,API log\n",
        )
    )
    assert (err.line, err.column) == (1, 17)
    assert "duplicate column name 'Model'" in str(err)


def test_non_numeric_value_names_line_and_column(write_file: WriteFile) -> None:
    path = write_file("n.csv", HEAD + OK + OK + "3,ChatGPT,abc,5,15,API log\n")
    err = fails(path)
    assert (err.line, err.column, err.field) == (4, 11, "Request tokens")
    assert str(err).startswith(f"{path}:4:11: column 'Request tokens': not a number")


def test_negative_token_count(write_file: WriteFile) -> None:
    err = fails(write_file("neg.csv", HEAD + OK + "2,ChatGPT,10,-5,5,API log\n"))
    assert (err.line, err.column, err.field) == (3, 14, "Response tokens")
    assert "negative value -5" in str(err)


@pytest.mark.parametrize("value", ["NaN", "inf", "-inf"])
def test_nan_token_count(write_file: WriteFile, value: str) -> None:
    err = fails(write_file("nan.csv", HEAD + f"2,ChatGPT,{value},5,5,API log\n"))
    assert err.line == 2
    assert err.field == "Request tokens"
    assert "not a finite number" in str(err)


def test_empty_cell(write_file: WriteFile) -> None:
    err = fails(write_file("empty.csv", HEAD + OK + "2,ChatGPT,,5,5,API log\n"))
    assert (err.line, err.field) == (3, "Request tokens")
    assert "missing value" in str(err)


def test_zero_request_tokens(write_file: WriteFile) -> None:
    err = fails(write_file("z.csv", HEAD + "2,ChatGPT,0,5,5,API log\n"))
    assert "zero request tokens" in str(err)


def test_zero_response_tokens_is_a_failure_not_an_error(write_file: WriteFile) -> None:
    table, _ = read_trace(write_file("f.csv", HEAD + "2,ChatGPT,3,0,3,API log\n"))
    assert table["failed"].to_list() == [True]


def test_fractional_and_huge_token_counts(write_file: WriteFile) -> None:
    assert "not a whole number" in str(fails(write_file("x.csv", HEAD + "2,A,1.5,5,5,API log\n")))
    err = fails(write_file("y.csv", HEAD + "2,A,99999999999,5,5,API log\n"))
    assert "out of range" in str(err)


def test_negative_timestamp(write_file: WriteFile) -> None:
    err = fails(write_file("t.csv", HEAD + "-3,A,1,5,5,API log\n"))
    assert (err.line, err.column, err.field) == (2, 1, "Timestamp")


def test_unknown_log_type(write_file: WriteFile) -> None:
    err = fails(write_file("l.csv", HEAD + "2,A,1,5,5,Web log\n"))
    assert "unknown log type 'Web log'" in str(err)
    assert err.column == 11


def test_timestamps_backwards_are_an_error_by_default(write_file: WriteFile) -> None:
    """RELIABILITY.md B19: a replay must not reorder a trace quietly; --sort accepts it."""
    rows = "5,A,1,5,5,API log\n9,A,1,5,5,API log\n7,A,1,5,5,API log\n8,A,1,5,5,API log\n"
    path = write_file("b.csv", HEAD + rows + "6,A,1,5,5,API log\n")
    err = fails(path)
    assert (err.path, err.line) == (str(path), 4)
    assert "timestamp goes backwards (2 times in the file)" in str(err)
    assert "--sort" in str(err.hint)
    assert "timestamp goes backwards" in str(fails(path, lenient=True))  # not a droppable row
    table, report = read_trace(path, sort=True)
    assert report.reordered == 2
    assert table["arrival_s"].to_list() == [0, 1, 2, 3, 4]
    assert report.warnings == ["2 timestamps go backwards (first at line 4); rows sorted stably"]


def test_too_many_fields(write_file: WriteFile) -> None:
    err = fails(write_file("wide.csv", HEAD + OK + "2,A,1,5,5,API log,extra\n"))
    assert err.line == 3
    assert "7 fields, expected 6" in str(err)


def test_torn_last_line(write_file: WriteFile) -> None:
    err = fails(write_file("torn.csv", HEAD + OK + "95,Chat"))
    assert err.line == 3
    assert "2 fields, expected 6" in str(err)


def test_invalid_utf8(write_file: WriteFile) -> None:
    err = fails(write_file("latin.csv", (HEAD + OK).encode() + b"2,Caf\xe9,1,5,5,API log\n"))
    assert (err.line, err.column) == (3, 6)
    assert "invalid UTF-8" in str(err)


def test_truncated_gzip(write_file: WriteFile, data_dir: Path) -> None:
    blob = gzip.compress((data_dir / "burstgpt_v1.csv").read_bytes())
    err = fails(write_file("cut.csv.gz", blob[: len(blob) // 2]))
    assert "gzip stream truncated" in str(err)


def test_corrupt_gzip(write_file: WriteFile, data_dir: Path) -> None:
    blob = bytearray(gzip.compress((data_dir / "burstgpt_v1.csv").read_bytes()))
    blob[20:30] = b"\xff" * 10
    assert "gzip" in str(fails(write_file("bad.csv.gz", bytes(blob))))


def test_mixed_time_zones(write_file: WriteFile) -> None:
    err = fails(
        write_file(
            "tz.csv",
            "TIMESTAMP,ContextTokens,GeneratedTokens\n"
            "2024-05-10 00:00:00+00:00,1,1\n2024-05-10 00:00:01,1,1\n",
        )
    )
    assert (err.line, err.field) == (3, "TIMESTAMP")
    assert "not a timestamp" in str(err)


def test_bad_json_line(write_file: WriteFile) -> None:
    err = fails(
        write_file(
            "bad.jsonl",
            '{"timestamp": 0, "input_length": 1, "output_length": 1}\n'
            '{"timestamp": 1, "input_length": 2\n',
        )
    )
    assert err.line == 2
    assert "not valid JSON" in str(err)


def test_jsonl_missing_key_and_bad_hash_ids(write_file: WriteFile) -> None:
    err = fails(
        write_file(
            "k.jsonl",
            '{"timestamp": 0, "input_length": 1, "output_length": 1}\n'
            '\n{"input_length": 2, "output_length": 1}\n',
        )
    )
    assert err.line == 3
    assert "timestamp" in str(err)
    err = fails(
        write_file(
            "h.jsonl",
            '{"timestamp": 0, "input_length": 1, "output_length": 1, "hash_ids": [1, "x"]}\n',
        )
    )
    assert err.line == 1
    assert "list of integers" in str(err)


def test_jsonl_negative_value_points_at_key(write_file: WriteFile) -> None:
    err = fails(
        write_file(
            "n.jsonl",
            '{"timestamp": 0, "input_length": 1, "output_length": 1}\n\n'
            '{"timestamp": 5, "input_length": -2, "output_length": 1}\n',
        )
    )
    assert (err.line, err.column, err.field) == (3, 18, "input_length")


def test_error_counts_the_other_bad_rows(write_file: WriteFile) -> None:
    err = fails(write_file("many.csv", HEAD + "1,A,-1,1,1,API log\n" * 5))
    assert "(and 4 more bad rows)" in str(err)
    assert err.hint is not None
    assert "--lenient" in err.hint


def test_bad_format_and_mapping_options(data_dir: Path) -> None:
    assert "unknown format" in str(fails(data_dir / "burstgpt_v1.csv", format="nope"))
    assert "needs a column mapping" in str(fails(data_dir / "burstgpt_v1.csv", format="generic"))
    err = fails(data_dir / "burstgpt_v1.csv", format="azure")
    assert "missing column 'TIMESTAMP'" in str(err)


def test_csv_hash_ids_must_be_a_json_list(write_file: WriteFile) -> None:
    err = fails(
        write_file(
            "h.csv", 'arrival_s,input_tokens,output_tokens,hash_ids\n0,1,1,"[1,2]"\n1,1,1,"[1,x]"\n'
        )
    )
    assert (err.line, err.field) == (3, "hash_ids")
    assert "not a JSON list of integers" in str(err)


def test_iso_timestamps_with_z(write_file: WriteFile) -> None:
    table, report = read_trace(
        write_file(
            "z.csv",
            "TIMESTAMP,ContextTokens,GeneratedTokens\n"
            "2024-05-10T00:00:00Z,1,1\n"
            "2024-05-10T00:00:02.5Z,1,1\n",
        )
    )
    assert table["arrival_s"].to_list() == [0.0, 2.5]
    assert report.origin == "2024-05-10 00:00:00"
