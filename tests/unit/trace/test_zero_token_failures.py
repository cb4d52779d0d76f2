"""BurstGPT logs some failures as rows with 0 request and 0 response tokens (BurstGPT_1.csv at
Timestamp 1106, 4525, 4608, 4725): they are failed requests, kept and counted, not bad rows.
Zero input stays an error everywhere else."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from burstlab import InputError, read_trace, validate
from burstlab.analyze.summary import analyze
from burstlab.trace.info import trace_info
from burstlab.workload.model import fit

WriteFile = Callable[[str, str | bytes], Path]

HEAD = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
V1 = HEAD + (
    "5,ChatGPT,472,18,490,Conversation log\n"
    "1106,ChatGPT,0,0,0,Conversation log\n"
    "1200,GPT-4,417,276,693,Conversation log\n"
    "4525,ChatGPT,0,0,0,API log\n"
    "4600,ChatGPT,300,0,300,API log\n"
    "4608,GPT-4,0,0,0,API log\n"
    "4725,ChatGPT,0,0,0,Conversation log\n"
    "4800,ChatGPT,35,12,47,API log\n"
)


def test_zero_token_rows_are_failed_requests(write_file: WriteFile) -> None:
    table, report = read_trace(write_file("BurstGPT_1.csv", V1))
    validate(table)
    assert report.rows_read == 8 == report.rows_kept + sum(report.dropped.values())
    assert report.dropped == {}
    assert report.zero_token_failures == 4
    assert any("4 rows with zero request and response tokens" in w for w in report.warnings)
    zero = table.filter(pl.col("input_tokens") == 0)
    assert zero["arrival_s"].to_list() == [1101, 4520, 4603, 4720]
    assert zero["failed"].all()
    assert zero["output_tokens"].to_list() == [0, 0, 0, 0]
    # a zero response alone was already a failure; the others are untouched
    assert table["failed"].to_list() == [False, True, False, True, True, True, True, False]


def test_drop_failed_drops_them_with_the_other_failures(write_file: WriteFile) -> None:
    table, report = read_trace(write_file("b.csv", V1), drop_failed=True)
    assert report.dropped == {"failed": 5}
    assert report.zero_token_failures == 4
    assert report.rows_read == report.rows_kept + 5 == 8
    assert table["input_tokens"].to_list() == [472, 417, 35]


def test_v3_and_parquet_round_trip(write_file: WriteFile, tmp_path: Path) -> None:
    v3 = (
        "Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,"
        "Total tokens,Log Type\n"
        "1,s1,0.5,ChatGPT,10,5,15,Conversation log\n"
        "2,,0.0,ChatGPT,0,0,0,API log\n"
    )
    table, report = read_trace(write_file("v3.csv", v3))
    assert report.zero_token_failures == 1
    assert table["failed"].to_list() == [False, True]
    out = tmp_path / "t.parquet"
    table.write_parquet(out)
    again, report2 = read_trace(out)  # burstlab's own table: the failed row reads back
    assert report2.format == "burstlab"
    assert again.equals(table)
    assert report2.zero_token_failures == 1


def test_zero_input_with_a_response_is_still_an_error(write_file: WriteFile) -> None:
    with pytest.raises(InputError, match="zero request tokens") as info:
        read_trace(write_file("z.csv", HEAD + "1,ChatGPT,3,1,4,API log\n2,ChatGPT,0,5,5,API log\n"))
    assert info.value.line == 3
    table, report = read_trace(
        write_file("l.csv", HEAD + "1,A,3,1,4,API log\n2,A,0,5,5,API log\n3,A,0,0,0,API log\n"),
        lenient=True,
    )
    assert report.dropped == {"zero_input": 1}
    assert report.zero_token_failures == 1
    assert table.height == 2


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,0,0\n"),
        ("m.jsonl", '{"timestamp": 0, "input_length": 0, "output_length": 0}\n'),
    ],
)
def test_other_formats_still_refuse_zero_input(
    write_file: WriteFile, name: str, content: str
) -> None:
    with pytest.raises(InputError, match="zero request tokens"):
        read_trace(write_file(name, content))


def test_generic_mapping_still_refuses_zero_input(write_file: WriteFile) -> None:
    from burstlab.trace.formats import parse_mapping

    path = write_file("g.csv", "ts,p,c\n1,3,4\n2,0,0\n")
    with pytest.raises(InputError, match="zero request tokens"):
        read_trace(path, mapping=parse_mapping("arrival=ts,input_tokens=p,output_tokens=c"))


def test_downstream_copes_with_a_zero_input_failed_row(write_file: WriteFile) -> None:
    rng = np.random.default_rng(0)
    arrivals = np.cumsum(rng.integers(0, 20, 400))
    rows = []
    for i, t in enumerate(arrivals):
        a, b = (0, 0) if i % 37 == 5 else (int(rng.integers(1, 2000)), int(rng.integers(0, 800)))
        log = "API log" if i % 2 else "Conversation log"
        rows.append(f"{t},{'ChatGPT' if i % 3 else 'GPT-4'},{a},{b},{a + b},{log}\n")
    table, report = read_trace(write_file("big.csv", HEAD + "".join(rows)))
    assert report.zero_token_failures == 11

    info = trace_info(table, report)
    assert info.rows == 400
    assert json.loads(info.model_dump_json())["load"]["zero_token_failures"] == 11
    assert all(c.input_p50 > 0 for c in info.breakdown)

    summary = analyze(table, report)
    text = summary.model_dump_json()
    assert "NaN" not in text
    assert "Infinity" not in text
    assert summary.rows == 400

    model = fit(table, window_s=1200.0)
    assert "NaN" not in model.model_dump_json()
    assert sum(c.share for c in model.classes) == pytest.approx(1.0)
