"""``burstlab analyze`` end to end: files written, keys present, hostile text inert."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from support.cli import BIN

pytestmark = pytest.mark.slow


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_analyze_sample(tmp_path: Path) -> None:
    out = run("analyze", "sample", "-o", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "Gamma shape" in out.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    calendar = summary["calendar"]
    assert (calendar["origin"], calendar["origin_from"]) == ("2023-11-16T18:15:46.680590", "trace")
    assert calendar["weekday0"] == 3  # a Thursday
    assert calendar["weekday_hour"] is None  # an hour of trace
    assert summary["elapsed"] is None
    b = summary["burstiness"]
    for key in ("shape", "scale"):
        assert b["gaps"]["gamma"][key] > 0
    assert b["cv"] > 0
    assert set(b["dispersion"]["idc"]) == {"1s", "10s", "60s", "600s"}
    assert summary["rows"] == 19366
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 5
    assert "<script" not in html


def test_hostile_names_are_escaped(tmp_path: Path, data_dir: Path) -> None:
    payload = "</script><script>alert(1)</script><img src=x onerror=alert(1)>"
    rows = ["Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"]
    rows += [f'{i},"{payload}",{10 + i % 7},{5 + i % 3},1,API log' for i in range(60)]
    trace = tmp_path / "evil.csv"
    trace.write_text("\n".join(rows) + "\n")
    out = run("analyze", str(trace), "-o", str(tmp_path / "o"), "--no-plots")
    assert out.returncode == 0, out.stderr
    html = (tmp_path / "o" / "report.html").read_text()
    assert "<script" not in html
    assert "<img src=x" not in html
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in html


def test_compare_two_traces(tmp_path: Path, data_dir: Path) -> None:
    out = run(
        "analyze",
        "sample",
        str(data_dir / "mooncake_head.jsonl"),
        "-o",
        str(tmp_path),
        "--no-plots",
    )
    assert out.returncode == 0, out.stderr
    assert "KS distances" in out.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    comparison = summary["comparison"]
    assert 0 < comparison["ks_input_tokens"] <= 1
    assert comparison["headline"]["rows"][:2] == [19366.0, 40.0]


def test_filters_and_bad_options(tmp_path: Path) -> None:
    out = run(
        "analyze", "sample", "-o", str(tmp_path), "--start", "10m", "--end", "20m", "--no-plots"
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["filters"] == {
        "model": None,
        "log_type": None,
        "start_s": 600.0,
        "end_s": 1200.0,
    }
    assert 0 < summary["rows"] < 19366
    empty = run("analyze", "sample", "-o", str(tmp_path / "empty"), "--model", "GPT-4")
    assert empty.returncode == 2
    assert "the filters select 0 rows" in empty.stderr
    bad = run("analyze", "sample", "-o", str(tmp_path), "--window", "soon")
    assert bad.returncode == 2
    assert "--window 'soon' is not a duration" in bad.stderr


def test_origin_gives_a_dateless_trace_its_calendar(tmp_path: Path) -> None:
    # BurstGPT v1 CSV, 8 days: 20 requests an hour on weekdays 09-17, 2 otherwise
    day = np.arange(8 * 24)
    wd, hour = (day // 24) % 7, day % 24
    per_hour = np.where((wd < 5) & (hour >= 9) & (hour < 17), 20, 2)
    start = np.repeat(day * 3600, per_hour)
    j = np.arange(per_hour.sum()) - np.repeat(np.cumsum(per_hour) - per_hour, per_hour)
    seconds = start + j * 3600 // np.repeat(per_hour, per_hour)
    rows = ["Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"]
    rows += [f"{t},ChatGPT,100,{20 + i % 50},1,Conversation log" for i, t in enumerate(seconds)]
    trace = tmp_path / "week.csv"
    trace.write_text("\n".join(rows) + "\n")
    out = run("analyze", str(trace), "-o", str(tmp_path / "o"), "--origin", "2024-01-01T00:00:00")
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    cal = summary["calendar"]
    assert (cal["origin"], cal["origin_from"], cal["weekday0"]) == (
        "2024-01-01T00:00:00",
        "option",
        0,
    )
    cells = cal["weekday_hour"]["requests_per_hour"]
    assert cells[2][10] == 20.0  # Wednesday 10:00
    assert cells[5][10] == 2.0  # Saturday 10:00
    assert len(cal["weekly"]["mean"]) == 168
    rate = cal["hourly_rate"]["hours"]
    assert rate[10]["mean"] == pytest.approx((6 * 20 + 2 * 2) / 8 / 3600)  # 6 weekdays of 8
    assert rate[3]["mean"] == pytest.approx(2 / 3600)
    html = (tmp_path / "o" / "report.html").read_text()
    for caption in (
        "Mean requests per hour by weekday and hour of day",
        "Weekly profile: requests per hour over the 168 hours of a week",
        "Request and response tokens per hour",
    ):
        assert f"<figcaption>{caption}" in html
    without = run("analyze", str(trace), "-o", str(tmp_path / "n"), "--no-plots")
    assert without.returncode == 0, without.stderr
    bare = json.loads((tmp_path / "n" / "summary.json").read_text())["calendar"]
    assert bare["weekday_hour"] is None
    assert "--origin" in bare["note"]


def test_bad_origin_is_one_error_line(tmp_path: Path) -> None:
    out = run("analyze", "sample", "-o", str(tmp_path), "--origin", "next tuesday")
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error: --origin 'next tuesday' is not an ISO datetime")
    assert not (tmp_path / "summary.json").exists()


def test_elapsed_of_burstgpt_v3(tmp_path: Path, data_dir: Path) -> None:
    out = run("analyze", str(data_dir / "burstgpt_v3.csv"), "-o", str(tmp_path), "--no-plots")
    assert out.returncode == 0, out.stderr
    e = json.loads((tmp_path / "summary.json").read_text())["elapsed"]
    assert [m["model"] for m in e["models"]] == ["ChatGPT", "GPT-4"]
    assert e["left_out"] == 1


def test_one_instant_is_analysed_with_figures(tmp_path: Path) -> None:
    same = tmp_path / "same.csv"
    same.write_text(
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
        + "100,ChatGPT,10,10,20,API log\n" * 5
    )
    out = run("analyze", str(same), "-o", str(tmp_path / "a"))
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert not summary["burstiness"]["gaps"]["gamma"]["identifiable"]
    assert "CV -" in out.stdout  # no "nan" in the headline
