"""``burstlab bench --api generate`` against a native stand-in, and ``--temperature`` /
``--max-output-tokens`` from the command line down to the body the server received."""

from __future__ import annotations

from pathlib import Path

import orjson
import polars as pl
import pytest

from burstlab.trace.io import write_table
from support.frames import constant_rate
from support.inproc import invoke
from support.native_servers import native_server


def _workload(tmp_path: Path) -> Path:
    table = constant_rate(5, 50.0).with_columns(
        pl.Series("output_tokens", [2, 3, 5, 8, 13], dtype=pl.Int32)
    )
    return write_table(table, tmp_path / "w.parquet")


def _records(run: Path) -> list[dict[str, object]]:
    rows = [orjson.loads(line) for line in (run / "records.jsonl").read_bytes().splitlines()]
    return sorted(rows, key=lambda row: int(row["request_id"]))  # type: ignore[call-overload]


def test_tgi_native_with_temperature_and_cap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    with native_server("tgi") as server:
        result = invoke(
            capsys,
            "bench",
            _workload(tmp_path),
            "--url",
            server.url,
            "--api",
            "generate",
            "--backend",
            "tgi",
            "--temperature",
            "0.7",
            "--max-output-tokens",
            "4",
            "-o",
            run,
            "-q",
            "--no-report",
        )
    assert result.code == 0, result.stderr
    assert "scheduled 5: ok 5" in result.stdout
    assert set(server.paths) == {"/generate_stream"}
    params = [body["parameters"] for body in server.bodies]
    assert sorted(p["max_new_tokens"] for p in params) == [2, 3, 4, 4, 4]
    assert {(p["temperature"], p["do_sample"], p["details"]) for p in params} == {(0.7, True, True)}
    rows = _records(run)
    assert [row["output_tokens"] for row in rows] == [2, 3, 5, 8, 13]
    assert [row["output_tokens_cap"] for row in rows] == [4] * 5
    assert [row["output_tokens_achieved"] for row in rows] == [2, 3, 4, 4, 4]
    assert {row["tokens_source"] for row in rows} == {"usage"}
    saved = orjson.loads((run / "run.json").read_bytes())
    config = saved["config"]
    assert (config["api"], config["backend"], config["temperature"]) == ("generate", "tgi", 0.7)
    assert config["max_output_tokens"] == 4


def test_sglang_native_sends_token_ids_and_temperature_zero_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    with native_server("sglang") as server:
        result = invoke(
            capsys,
            "bench",
            _workload(tmp_path),
            "--url",
            server.url,
            "--api",
            "generate",
            "--backend",
            "sglang",
            "-o",
            run,
            "-q",
            "--no-report",
        )
    assert result.code == 0, result.stderr
    sampling = [body["sampling_params"] for body in server.bodies]
    assert {(s["temperature"], s["ignore_eos"]) for s in sampling} == {(0.0, True)}
    assert all(len(body["input_ids"]) == 32 for body in server.bodies)
    rows = _records(run)
    assert [row["output_tokens_achieved"] for row in rows] == [2, 3, 5, 8, 13]
    assert [row["input_tokens_achieved"] for row in rows] == [32] * 5
    assert {row["output_tokens_cap"] for row in rows} == {None}


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--api", "generate", "--backend", "openai"], "--backend"),
        (["--api", "generate", "--backend", "tgi", "--ignore-eos"], "--ignore-eos"),
        (["--api", "generate", "--backend", "tgi", "--min-tokens"], "--min-tokens"),
        (["--api", "generate", "--backend", "vllm", "--prompt", "ids"], "--prompt"),
        (["--api", "generate", "--backend", "vllm", "--max-field", "max_tokens"], "--max-field"),
        (["--api", "nope"], "--api"),
        (["--temperature", "-1"], "--temperature"),
        (["--max-output-tokens", "0"], "--max-output-tokens"),
    ],
)
def test_bad_native_options_are_one_clean_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], named: str
) -> None:
    run = tmp_path / "run"
    workload = _workload(tmp_path)
    # nothing listens here: every check is made before a request is sent
    base = ["bench", workload, "--url", "http://127.0.0.1:9", "--model", "m", "-o", run, "-q"]
    result = invoke(capsys, *base, *options)
    assert result.is_clean_error(named), result.stderr
    assert not run.exists()
