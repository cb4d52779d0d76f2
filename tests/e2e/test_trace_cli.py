"""Drive the real ``burstlab`` console script: output, exit codes, no tracebacks."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from support.cli import BIN

WriteFile = Callable[[str, str | bytes], Path]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


def test_help_lists_commands() -> None:
    out = run("--help")
    assert out.returncode == 0
    for word in ("demo", "trace"):
        assert word in out.stdout


@pytest.mark.slow
def test_demo_runs_the_whole_loop(tmp_path: Path) -> None:
    """Trace info, a replay of the busiest minute, the engine-timed server, bench, report."""
    out = subprocess.run(
        [str(BIN), "demo", "-q", "-o", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "19,366" in out.stdout
    assert "peak rate (1 s bins)" in out.stdout
    assert "mock server: http://127.0.0.1:" in out.stdout
    for name in ("records.jsonl", "summary.json", "run.json", "report.html"):
        assert (tmp_path / "run" / name).exists(), name
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["counts"]["ok"] == summary["counts"]["scheduled"] > 500
    # the server is the simulated engine: what bench measured over HTTP is what the
    # offline simulation of the same workload gives
    found = re.search(r"TTFT mean (\d+) vs (\d+) ms, E2E mean ([\d.]+) vs ([\d.]+) s", out.stdout)
    assert found, out.stdout
    sim_ttft, got_ttft, sim_e2e, got_e2e = map(float, found.groups())
    assert abs(got_ttft - sim_ttft) < 0.1 * sim_ttft + 20
    assert abs(got_e2e - sim_e2e) < 0.05 * sim_e2e + 0.05


@pytest.mark.parametrize(
    ("trace", "rows", "sessions"),
    [
        ("sample", 19366, 0),
        ("burstgpt_v1.csv", 6, 0),
        ("burstgpt_v3.csv", 6, 2),
        ("mooncake_head.jsonl", 40, 0),
    ],
)
@pytest.mark.slow
def test_trace_info_json(data_dir: Path, trace: str, rows: int, sessions: int) -> None:
    target = trace if trace == "sample" else str(data_dir / trace)
    out = run("trace", "info", target, "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    for key in ("rows", "span_s", "mean_rps", "failure_rate", "sessions"):
        assert key in info
    assert (info["rows"], info["sessions"]) == (rows, sessions)
    assert info["load"]["rows_read"] == rows


def test_trace_info_table(data_dir: Path) -> None:
    out = run("trace", "info", str(data_dir / "burstgpt_v3.csv"))
    assert out.returncode == 0, out.stderr
    assert "burstgpt v3 (8 columns)" in out.stdout
    assert "GPT-4" in out.stdout
    assert "conversation" in out.stdout
    assert "turns per session" in out.stdout


@pytest.mark.slow
def test_warning_goes_to_stderr(write_file: WriteFile) -> None:
    path = write_file(
        "o.csv",
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,"
        "Log Type\n9,A,1,1,2,API log\n3,A,1,1,2,API log\n",
    )
    out = run("trace", "info", str(path), "--json", "--sort")
    assert out.returncode == 0
    assert json.loads(out.stdout)["load"]["reordered"] == 1
    assert "warning: 1 timestamps go backwards (first at line 3)" in out.stderr
    refused = run("trace", "info", str(path))
    assert refused.returncode == 2
    assert f"error: {path}:3: timestamp goes backwards (once in the file)" in refused.stderr
    assert "--sort" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty file"),
        (
            "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
            "1,A,x,1,1,API log\n",
            ":2:5: column 'Request tokens': not a number",
        ),
        ("a,b\n1,2\n", "cannot tell the trace format"),
    ],
)
@pytest.mark.slow
def test_bad_input_is_one_line_exit_2(write_file: WriteFile, content: str, message: str) -> None:
    out = run("trace", "info", str(write_file("bad.csv", content)))
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert out.stderr.startswith("error: ")


@pytest.mark.slow
def test_missing_file_and_bad_options(tmp_path: Path) -> None:
    out = run("trace", "info", str(tmp_path / "none.csv"))
    assert (out.returncode, "no such file" in out.stderr) == (2, True)
    out = run("trace", "info", "sample", "--time-unit", "weeks")
    assert out.returncode == 2
    assert "--time-unit" in out.stderr
    out = run("trace", "info", "sample", "--map", "arrival")
    assert out.returncode == 2
    assert "FIELD=COLUMN" in out.stderr


def test_generic_mapping_from_cli(write_file: WriteFile) -> None:
    path = write_file("g.csv", "ts,p,c\n1000,5,6\n3000,7,8\n")
    out = run(
        "trace",
        "info",
        str(path),
        "--json",
        "--map",
        "arrival=ts,input_tokens=p,output_tokens=c",
        "--time-unit",
        "ms",
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["span_s"] == 2.0


@pytest.mark.slow
def test_lenient_and_cache(write_file: WriteFile) -> None:
    path = write_file(
        "l.csv",
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,"
        "Log Type\n1,A,1,1,2,API log\n2,A,-1,1,2,API log\n",
    )
    out = run("trace", "info", str(path), "--json", "--lenient", "--cache")
    load = json.loads(out.stdout)["load"]
    assert (load["dropped"], load["cache"]) == ({"negative": 1}, "miss")
    again = json.loads(run("trace", "info", str(path), "--json", "--lenient", "--cache").stdout)
    assert again["load"]["cache"] == "hit"


@pytest.mark.slow
def test_convert_and_schema(tmp_path: Path, data_dir: Path) -> None:
    target = tmp_path / "v3.parquet"
    out = run("trace", "convert", str(data_dir / "burstgpt_v3.csv"), str(target))
    assert out.returncode == 0, out.stderr
    assert "wrote 6 rows" in out.stdout
    info = json.loads(run("trace", "info", str(target), "--json").stdout)
    assert (info["rows"], info["load"]["format"]) == (6, "burstlab")
    bad = run("trace", "convert", "sample", str(tmp_path / "x.txt"))
    assert bad.returncode == 2
    assert "extension" in bad.stderr
    assert "arrival_s" in run("trace", "schema").stdout


@pytest.mark.slow
def test_burstgpt_zero_token_rows_are_failures(write_file: WriteFile, tmp_path: Path) -> None:
    """BurstGPT_1.csv logs some failures as 0 request and 0 response tokens."""
    path = write_file(
        "BurstGPT_1.csv",
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
        "5,ChatGPT,472,18,490,Conversation log\n1106,ChatGPT,0,0,0,Conversation log\n"
        "4525,ChatGPT,0,0,0,API log\n4600,GPT-4,30,2,32,API log\n",
    )
    out = run("trace", "info", str(path), "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert (info["rows"], info["failure_rate"]) == (4, 0.5)
    load = info["load"]
    assert (load["rows_read"], load["rows_kept"], load["dropped"]) == (4, 4, {})
    assert load["zero_token_failures"] == 2
    assert "warning: 2 rows with zero request and response tokens" in out.stderr
    table = run("trace", "info", str(path))
    assert table.returncode == 0, table.stderr
    assert "failure rate" in table.stdout
    converted = tmp_path / "b.parquet"
    assert run("trace", "convert", str(path), str(converted)).returncode == 0
    again = json.loads(run("trace", "info", str(converted), "--json").stdout)
    assert (again["rows"], again["failure_rate"]) == (4, 0.5)
    zero_input = write_file("m.jsonl", '{"timestamp": 0, "input_length": 0, "output_length": 0}\n')
    bad = run("trace", "info", str(zero_input))
    assert bad.returncode == 2
    assert "zero request tokens" in bad.stderr


def test_analyze_reads_records_killed_mid_write(tmp_path: Path) -> None:
    """records.jsonl is in completion order and a killed run leaves a torn last line:
    ``analyze`` reads it as ``report`` does, sorting without --sort and counting the tail."""
    from burstlab.results.records import Record, RecordWriter

    records = tmp_path / "records.jsonl"
    writer = RecordWriter(records)
    for i in [1, 0, *range(2, 60)]:
        end = "ok" if i % 7 else "failed"
        writer.write(
            Record(request_id=i, arrival_s=i * 0.7 + (i % 3), input_tokens=20 + i % 11,
                   output_tokens=5 + i % 13, outcome=end, failed=end == "failed")
        )  # fmt: skip
    writer.close()
    with records.open("ab") as fh:
        fh.write(b'{"request_id":60,"arrival_s":42.0,"input_tok')
    out = run("analyze", str(records), "-o", str(tmp_path / "a"), "--no-plots")
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["rows"] == 60
    info = run("trace", "info", str(records), "--json")
    assert info.returncode == 0, info.stderr
    load = json.loads(info.stdout)["load"]
    assert (load["format"], load["rows_read"], load["rows_kept"]) == ("records", 61, 60)
    assert load["dropped"] == {"torn_tail": 1}
    assert load["reordered"] > 0
    assert "warning: line 61 is torn" in info.stderr
