"""Every reader returns the canonical table and a load report whose counts reconcile."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from burstlab import ColumnMap, read_trace, validate
from burstlab.trace.load_report import LoadReport

WriteFile = Callable[[str, str | bytes], Path]


def check(table: pl.DataFrame, report: LoadReport) -> None:
    validate(table)
    assert report.rows_read == report.rows_kept + sum(report.dropped.values())
    assert report.rows_kept == table.height


def test_burstgpt_v1(data_dir: Path) -> None:
    table, report = read_trace(data_dir / "burstgpt_v1.csv")
    check(table, report)
    assert (report.format, report.variant) == ("burstgpt", "v1/v2 (6 columns)")
    assert table["arrival_s"].to_list() == [0, 40, 113, 125, 126, 185]
    assert report.origin == "5.0 s"
    assert table["log_type"].cast(pl.String).to_list()[:4] == ["conversation"] * 3 + ["api"]
    assert table["failed"].to_list() == [False, False, False, True, False, False]
    assert table["model"].cast(pl.String).to_list()[2] == "GPT-4"
    assert table["session_id"].null_count() == table.height
    assert table["turn"].null_count() == table.height


def test_burstgpt_v3_by_name_with_sessions_and_turns(data_dir: Path) -> None:
    table, report = read_trace(data_dir / "burstgpt_v3.csv")
    check(table, report)
    assert report.variant == "v3 (8 columns)"
    assert table["input_tokens"].to_list() == [906, 36, 512, 1400, 77, 1600]
    assert table["elapsed_s"].to_list() == [43, 2, 3, 12, 7, 9]
    sid = "1722ac82-0a46-4bf0-aa08-89794e7a2b3f"
    assert table.filter(pl.col("session_id") == sid)["turn"].to_list() == [0, 1, 2]
    api = table.filter(pl.col("log_type") == "api")
    assert api["session_id"].null_count() == 2
    assert api["turn"].null_count() == 2
    assert table["arrival_s"][3] == pytest.approx(120.5)


def test_burstgpt_columns_in_any_order(write_file: WriteFile) -> None:
    path = write_file(
        "shuffled.csv",
        "Log Type,Response tokens,Timestamp,Request tokens,Model,Total tokens\n"
        "API log,10,3,20,GPT-4,30\nConversation log,0,4,7,ChatGPT,7\n",
    )
    table, report = read_trace(path)
    check(table, report)
    assert table["input_tokens"].to_list() == [20, 7]
    assert table["failed"].to_list() == [False, True]


def test_burstgpt_gzip_and_parquet(data_dir: Path, tmp_path: Path) -> None:
    raw = (data_dir / "burstgpt_v3.csv").read_bytes()
    gz = tmp_path / "b.csv.gz"
    gz.write_bytes(gzip.compress(raw))
    sneaky = tmp_path / "really_gzip.csv"
    sneaky.write_bytes(gzip.compress(raw))
    expected, _ = read_trace(data_dir / "burstgpt_v3.csv")
    for path in (gz, sneaky):
        table, report = read_trace(path)
        check(table, report)
        assert report.compressed
        assert table.equals(expected)
    pq = tmp_path / "b.parquet"
    pl.read_csv(data_dir / "burstgpt_v3.csv", infer_schema=False).with_columns(
        pl.col("Timestamp", "Request tokens", "Response tokens").cast(pl.Float64)
    ).write_parquet(pq)
    table, report = read_trace(pq)
    check(table, report)
    assert report.kind == "parquet"
    assert table.equals(expected)


def test_without_failures_and_drop_failed(data_dir: Path) -> None:
    table, report = read_trace(data_dir / "burstgpt_v1.csv", drop_failed=True)
    check(table, report)
    assert report.dropped == {"failed": 1}
    assert not table["failed"].any()


def test_azure_2023_sample() -> None:
    table, report = read_trace("sample")
    check(table, report)
    assert report.format == "azure"
    assert table.height == 19366
    assert report.origin == "2023-11-16 18:15:46.680590"
    # 7-digit fractions are kept to the nanosecond: 18:15:50.9951690 - 18:15:46.6805900
    assert table["arrival_s"][1] == pytest.approx(4.314579, abs=1e-9)
    assert table["input_tokens"][:2].to_list() == [374, 396]
    assert table["model"].null_count() == table.height


def test_azure_2024_with_time_zone(data_dir: Path) -> None:
    table, report = read_trace(data_dir / "azure_2024.csv")
    check(table, report)
    assert table["arrival_s"].to_list() == pytest.approx([0, 0.49007, 0.99007, 3.24007])
    assert not table["failed"].any()  # Azure does not mark failures


def test_mooncake_jsonl_keeps_hash_ids(data_dir: Path) -> None:
    table, report = read_trace(data_dir / "mooncake_head.jsonl")
    check(table, report)
    assert report.format == "mooncake"
    assert table.height == 40
    assert table.schema["hash_ids"] == pl.List(pl.Int64)
    assert table["hash_ids"][0].to_list() == list(range(14))
    assert table["input_tokens"][0] == 6758


def test_mooncake_ms_timestamps(write_file: WriteFile) -> None:
    path = write_file(
        "m.jsonl",
        '{"timestamp": 1500, "input_length": 10, "output_length": 2}\n'
        '\n{"timestamp": 4000, "input_length": 5, "output_length": 1}\n',
    )
    table, report = read_trace(path)
    check(table, report)
    assert table["arrival_s"].to_list() == [0.0, 2.5]
    assert "hash_ids" not in table.columns


def test_generic_mapping_csv_jsonl_parquet(write_file: WriteFile, tmp_path: Path) -> None:
    cmap = ColumnMap(
        arrival="t_ms",
        arrival_unit="ms",
        input_tokens="prompt",
        output_tokens="completion",
        model="m",
        failed="err",
    )
    csv_path = write_file(
        "g.csv", "t_ms,prompt,completion,m,err,extra\n100,5,6,llama,0,x\n350,7,0,llama,1,y\n"
    )
    rows = pl.DataFrame(
        {
            "t_ms": [100, 350],
            "prompt": [5, 7],
            "completion": [6, 0],
            "m": ["llama", "llama"],
            "err": [False, True],
        }
    )
    jsonl_path = tmp_path / "g.jsonl"
    rows.write_ndjson(jsonl_path)
    pq_path = tmp_path / "g.parquet"
    rows.write_parquet(pq_path)
    for path in (csv_path, jsonl_path, pq_path):
        table, report = read_trace(path, mapping=cmap)
        check(table, report)
        assert report.format == "generic"
        assert table["arrival_s"].to_list() == [0.0, 0.25]
        assert table["failed"].to_list() == [False, True]
        assert table["model"].cast(pl.String).to_list() == ["llama", "llama"]


def test_format_override(data_dir: Path) -> None:
    table, report = read_trace(data_dir / "burstgpt_v1.csv", format="burstgpt")
    assert report.format == "burstgpt"
    check(table, report)


def test_bom_and_crlf(write_file: WriteFile) -> None:
    path = write_file(
        "bom.csv",
        b"\xef\xbb\xbfTIMESTAMP,ContextTokens,GeneratedTokens\r\n"
        b"2023-11-16 18:15:46.6805900,374,44\r\n"
        b"2023-11-16 18:15:47.0000000,10,4\r\n",
    )
    table, report = read_trace(path)
    check(table, report)
    assert report.format == "azure"
    assert table["input_tokens"].to_list() == [374, 10]


def test_blank_lines_are_counted_not_lost(write_file: WriteFile) -> None:
    path = write_file(
        "blank.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46,374,44\n\n"
        "2023-11-16 18:15:47,10,4\n\n",
    )
    table, report = read_trace(path)
    check(table, report)
    assert report.dropped == {"blank_line": 2}
    assert report.rows_read == 4


def test_file_without_final_newline(write_file: WriteFile) -> None:
    path = write_file(
        "nonl.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46,374,44\n2023-11-16 18:15:48,1,2",
    )
    table, _ = read_trace(path)
    assert table["output_tokens"].to_list() == [44, 2]


def test_duplicate_timestamps_keep_file_order(write_file: WriteFile) -> None:
    path = write_file(
        "dup.csv",
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,"
        "Log Type\n1,A,1,1,2,API log\n1,B,2,1,3,API log\n1,C,3,1,4,API log\n",
    )
    table, report = read_trace(path)
    assert table["input_tokens"].to_list() == [1, 2, 3]
    assert report.reordered == 0


def test_backwards_timestamps_sorted_stably_with_warning(write_file: WriteFile) -> None:
    path = write_file(
        "order.csv",
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,"
        "Log Type\n10,A,1,1,2,API log\n5,B,2,1,3,API log\n"
        "10,C,3,1,4,API log\n7,D,4,1,5,API log\n",
    )
    table, report = read_trace(path, sort=True)
    check(table, report)
    assert table["input_tokens"].to_list() == [2, 4, 1, 3]
    assert report.reordered == 2
    assert "line 3" in report.warnings[0]


def test_lenient_drops_bad_rows_by_reason(write_file: WriteFile) -> None:
    path = write_file(
        "bad.csv",
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,"
        "Log Type\n1,A,10,1,2,API log\n2,A,abc,1,2,API log\n"
        "3,A,-4,1,2,API log\n4,A,NaN,1,2,API log\n5,A,0,1,2,API log\n"
        "6,A,1.5,1,2,API log\n7,A,,1,2,API log\n8,A,9,1,2,Web log\n"
        "9,A,99999999999,1,1,API log\n10,A,3,4,7,API log\n",
    )
    table, report = read_trace(path, lenient=True)
    check(table, report)
    assert table["input_tokens"].to_list() == [10, 3]
    assert report.dropped == {
        "not_a_number": 1,
        "negative": 1,
        "non_finite": 1,
        "zero_input": 1,
        "not_integer": 1,
        "missing_value": 1,
        "unknown_log_type": 1,
        "out_of_range": 1,
    }
    assert report.rows_read == 10


def test_sample_name_and_api() -> None:
    from burstlab import sample_trace

    assert sample_trace().height == 19366
