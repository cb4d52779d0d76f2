"""``burstlab analyze`` end to end: files written, keys present, hostile text inert."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent / "burstlab"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_analyze_sample(tmp_path: Path) -> None:
    out = run("analyze", "sample", "-o", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "Gamma shape" in out.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    b = summary["burstiness"]
    for key in ("shape", "scale"):
        assert b["gamma"][key] > 0
    assert b["cv"] > 0
    assert set(b["idc"]) == {"1s", "10s", "60s"}
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
    empty = run("analyze", "sample", "-o", str(tmp_path), "--model", "GPT-4")
    assert empty.returncode == 2
    assert "the filters select 0 rows" in empty.stderr
    bad = run("analyze", "sample", "-o", str(tmp_path), "--window", "soon")
    assert bad.returncode == 2
    assert "--window 'soon' is not a duration" in bad.stderr
